"""The bandwidth probe against a plain NumPy copy on this machine, and its per-machine cache."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgegen.bench import bandwidth

PROBE_BYTES = 128 * 2**20       # 4x the 32 MB L3 of the CI machines; small enough for a shared box
RUNS = 3
# a copy reads and writes each byte; a read-only sum is faster per byte read, by up to ~2x on most
# machines and by less where writes are cheap: a generous window
LOW, HIGH = 0.3, 5.0
PROBE = bandwidth.read_bandwidth   # the real probe (conftest stubs the module's name for the CLI tests)


def numpy_copy_gbps(nbytes: int, runs: int) -> float:
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9          # bytes read + bytes written


def test_probe_is_plausible_against_a_numpy_copy():
    probe = PROBE(1, nbytes=PROBE_BYTES, runs=RUNS)
    copy = numpy_copy_gbps(PROBE_BYTES, RUNS)
    assert LOW * copy <= probe <= HIGH * copy, f"probe {probe:.1f} GB/s against a NumPy copy's {copy:.1f} GB/s"


def test_probe_rejects_more_threads_than_numba_has():
    import numba
    from edgegen.errors import UsageError
    with pytest.raises(UsageError, match="threads must be between 1 and"):
        PROBE(numba.config.NUMBA_NUM_THREADS + 1, nbytes=4096)


def test_cache_measures_once_per_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv(bandwidth.CACHE_ENV, str(tmp_path / "c"))
    calls = []

    def measure(threads):
        calls.append(threads)
        return 11.5 * threads
    assert bandwidth.cached_bandwidth(1, measure) == 11.5
    assert bandwidth.cached_bandwidth(1, measure) == 11.5
    assert bandwidth.cached_bandwidth(2, measure) == 23.0
    assert calls == [1, 2]
    saved = json.loads((tmp_path / "c" / bandwidth.CACHE_FILE).read_text())
    assert saved[bandwidth.cache_key(1)]["gbps"] == 11.5 and saved[bandwidth.cache_key(2)]["gbps"] == 23.0
    assert bandwidth.cache_key(1).endswith("| 1 threads") and "cores" in bandwidth.cache_key(1)


def test_unreadable_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv(bandwidth.CACHE_ENV, str(tmp_path))
    (tmp_path / bandwidth.CACHE_FILE).write_text("{half written")
    assert bandwidth.cached_bandwidth(1, lambda t: 7.0) == 7.0
    assert json.loads((tmp_path / bandwidth.CACHE_FILE).read_text())[bandwidth.cache_key(1)]["gbps"] == 7.0
    assert [p.name for p in tmp_path.iterdir()] == [bandwidth.CACHE_FILE]     # no temporary file left
