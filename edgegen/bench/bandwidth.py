"""This machine's memory read bandwidth, the ceiling for decode (which reads every weight per token).

    gbps = read_bandwidth(threads=1)        # GB/s (1 GB = 1e9 bytes), measured now
    gbps = cached_bandwidth(threads=1)      # measured once per machine and thread count, then cached

A Numba ``prange`` sum over a float32 array much larger than the last-level cache, best of
several runs after one warm-up (which also JIT-compiles). The sum is checked against the
known answer so that a loop the compiler removed cannot report a fantastic figure.

The cache is ``bandwidth.json`` in ``~/.cache/edgegen`` (``EDGEGEN_CACHE_DIR`` overrides the
folder), keyed by CPU model, core count and thread count; it is written atomically.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from edgegen.atomic import write_atomically
from edgegen.bench import sysinfo
from edgegen.errors import UsageError

ARRAY_BYTES = 1 << 30        # 1 GiB: far beyond any L3 cache
RUNS = 5
GB = 1e9
SUM_RTOL = 1e-9
CACHE_ENV = "EDGEGEN_CACHE_DIR"
CACHE_FILE = "bandwidth.json"


def _sum_kernel():
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def total(a):
        s = 0.0                  # float64: float32 would stop counting at 2**24
        for i in numba.prange(a.shape[0]):
            s += a[i]
        return s
    return total


def read_bandwidth(threads: int, nbytes: int = ARRAY_BYTES, runs: int = RUNS) -> float:
    """Best-of-``runs`` read bandwidth in GB/s with ``threads`` Numba threads."""
    import numba
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise UsageError(f"bandwidth probe: threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                         f"(this machine's cores), found {threads}")
    kernel = _sum_kernel()
    a = np.ones(nbytes // np.dtype(np.float32).itemsize, dtype=np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        expected = float(a.size)
        got = float(kernel(a))                                   # warm-up and JIT
        if abs(got - expected) > SUM_RTOL * expected:
            raise RuntimeError(f"bandwidth kernel summed {got}, expected {expected}: the measurement is invalid")
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            kernel(a)
            best = min(best, time.perf_counter() - t0)
    finally:
        numba.set_num_threads(previous)
    return a.nbytes / best / GB


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgegen")


def cache_key(threads: int) -> str:
    return f"{sysinfo.cpu_model()} | {sysinfo.cores()} cores | {threads} threads"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}                  # unreadable or half-written by another tool: measure again and rewrite
    return data if isinstance(data, dict) else {}


def _write_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8"))


def cached_bandwidth(threads: int, measure=None) -> float:
    """GB/s at ``threads``: from the cache, else measured (``measure(threads)``, default read_bandwidth) and cached."""
    path = cache_dir() / CACHE_FILE
    cache = _read_cache(path)
    entry = cache.get(cache_key(threads))
    if isinstance(entry, dict) and isinstance(entry.get("gbps"), (int, float)) and entry["gbps"] > 0:
        return float(entry["gbps"])
    gbps = (measure or read_bandwidth)(threads)
    cache[cache_key(threads)] = {"gbps": round(gbps, 3), "array_bytes": ARRAY_BYTES,
                                 "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_atomically(path, cache)
    return gbps


if __name__ == "__main__":
    import numba
    for t in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        print(f"{t} thread(s): {read_bandwidth(t):.1f} GB/s")
