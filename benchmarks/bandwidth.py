"""This machine's memory read bandwidth: edgegen.bench.bandwidth (one copy, in the installed package).

    python benchmarks/bandwidth.py       # GB/s at 1 .. NUMBA_NUM_THREADS threads, measured now
"""
from __future__ import annotations

from edgegen.bench.bandwidth import ARRAY_BYTES, GB, RUNS, cached_bandwidth, read_bandwidth

__all__ = ["ARRAY_BYTES", "GB", "RUNS", "cached_bandwidth", "read_bandwidth"]

if __name__ == "__main__":
    import numba
    for t in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        print(f"{t} thread(s): {read_bandwidth(t):.1f} GB/s")
