"""What only the Numba kernels (kernels/numba_cpu.py) promise beyond the shared parity tests in
test_kernel_parity.py: the scalar half decoder of block scales bit-exact for every f16 pattern,
unsupported qtypes and out-of-bounds arguments refused by the wrappers (the compiled loops are
unchecked), and the ``threads`` argument setting Numba's thread count without changing a bit.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
from kernel_data import make_weights

from edgegen.constants import GGMLType, block_geometry
from edgegen.kernels import numba_cpu as nb


def test_f16_block_scales_all_bit_patterns():
    """The scalar half decoder of the block scales: Q8_0 blocks with d = every half and q = 1."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    blocks = np.ones((bits.size, block_geometry(GGMLType.Q8_0)[1]), dtype=np.uint8)
    blocks[:, :2] = bits.view(np.uint8).reshape(-1, 2)
    K = bits.size * block_geometry(GGMLType.Q8_0)[0]
    out = np.empty((1, K), dtype=np.float32)
    nb.get_rows(blocks.reshape(1, -1), GGMLType.Q8_0, K, np.zeros(1, np.int32), out)
    got = out.reshape(bits.size, -1)[:, 0]
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("qtype", [GGMLType.Q5_0, GGMLType.Q8_1, GGMLType.IQ4_NL], ids=lambda q: q.name)
def test_unsupported_qtype_raises(qtype):
    w = np.zeros((2, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match="unsupported qtype"):
        nb.matmul(w, int(qtype), 32, np.zeros((1, 32), np.float32), np.empty((1, 2), np.float32))
    with pytest.raises(ValueError, match="unsupported qtype"):
        nb.get_rows(w, int(qtype), 32, np.zeros(1, np.int32), np.empty((1, 32), np.float32))


def test_out_of_bounds_arguments_raise():
    """The wrappers refuse what would make the unchecked compiled loops leave their arrays."""
    w = make_weights(GGMLType.Q8_0, 5, 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"ids \(T,\) in 0..4"):
        nb.get_rows(w, GGMLType.Q8_0, 64, np.array([5], np.int32), np.empty((1, 64), np.float32))
    with pytest.raises(ValueError, match=r"rows of 102 bytes, found \(5, 68\)"):
        nb.matmul(w, GGMLType.Q8_0, 96, np.zeros((1, 96), np.float32), np.empty((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"x of shape \(T, 64\)"):
        nb.matmul(w, GGMLType.Q8_0, 64, np.zeros((1, 32), np.float32), np.empty((1, 5), np.float32))
    q = np.zeros((3, 4, 8), np.float32)
    cache = np.zeros((2, 4, 8), np.float32)
    with pytest.raises(ValueError, match="pos0 \\+ T <= C"):
        nb.attention(q, cache, cache, 2, 1.0, np.empty_like(q))


def test_threads_setting_and_determinism():
    rng = np.random.default_rng(3)
    w = make_weights(GGMLType.Q8_0, 23, 96, rng)
    x = rng.standard_normal((7, 96)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, 64):
            out = np.empty((7, 23), dtype=np.float32)
            nb.matmul(w, int(GGMLType.Q8_0), 96, x, out, threads=threads)
            assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
            results.append(out)
        np.testing.assert_array_equal(results[0], results[1])
    finally:
        numba.set_num_threads(before)
