"""This machine's memory read bandwidth, the ceiling for decode (which reads every weight per token).

    gbps = read_bandwidth(threads=1)     # GB/s, 1 GB = 1e9 bytes

A Numba ``prange`` sum over a float32 array much larger than the last-level cache, best of
several runs after one warm-up (which also JIT-compiles). The sum is compared with NumPy's so
a loop the compiler removed cannot report a fantastic figure.
"""
from __future__ import annotations

import time

import numba
import numpy as np

ARRAY_BYTES = 1 << 30        # 1 GiB: far beyond any L3 cache
RUNS = 5
GB = 1e9
SUM_RTOL = 1e-9


@numba.njit(parallel=True, fastmath=True, cache=False)
def _sum(a: np.ndarray) -> float:
    total = 0.0                  # float64: float32 would stop counting at 2**24
    for i in numba.prange(a.shape[0]):
        total += a[i]
    return total


def read_bandwidth(threads: int, nbytes: int = ARRAY_BYTES, runs: int = RUNS) -> float:
    """Best-of-``runs`` read bandwidth in GB/s with ``threads`` Numba threads."""
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                         f"(NUMBA_NUM_THREADS), found {threads}")
    a = np.ones(nbytes // np.dtype(np.float32).itemsize, dtype=np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        expected = float(a.size)
        got = float(_sum(a))                                   # warm-up and JIT
        if abs(got - expected) > SUM_RTOL * expected:
            raise RuntimeError(f"bandwidth kernel summed {got}, expected {expected}: the measurement is invalid")
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            _sum(a)
            best = min(best, time.perf_counter() - t0)
    finally:
        numba.set_num_threads(previous)
    return a.nbytes / best / GB


if __name__ == "__main__":
    for t in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        print(f"{t} thread(s): {read_bandwidth(t):.1f} GB/s")
