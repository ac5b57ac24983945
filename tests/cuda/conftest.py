"""The CUDA tests run on numba's simulator unless EDGEGEN_TEST_REAL_CUDA=1 (tests/conftest.py sets
NUMBA_ENABLE_CUDASIM before numba is imported). The simulator runs one Python thread per CUDA thread:
shapes stay tiny, and a short GIL switch interval keeps its busy-polling block manager fast."""
from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _fast_thread_switches():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)
