"""benchmarks/bench_cuda.py --smoke runs under the simulator and prints every figure."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba.cuda")
BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_cuda.py"


def test_bench_cuda_smoke():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM=os.environ.get("NUMBA_ENABLE_CUDASIM", "1"))
    r = subprocess.run([sys.executable, str(BENCH), "--smoke"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "device-to-device copy" in out and "decode Q4_0" in out and "decode Q8_0" in out
    assert "attention ctx" in out and "tok/s" in out
