"""Parity of the Numba kernels (kernels/numba_cpu.py) with their NumPy references (kernels/ref.py).

Dequantization (get_rows, and so every block decoder) is bit-exact; matmul is held to
1e-4 of sum_k |W[n,k] x[t,k]| (the scale of a dot product's rounding error); the float64
elementwise kernels to float32 rounding.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
from kernel_data import make_weights, random_blocks

from edgegen.constants import GGMLType, RopeStyle, block_geometry
from edgegen.kernels import numba_cpu as nb
from edgegen.kernels import ref
from edgegen.kernels.quants import dequantize

QTYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1,
          GGMLType.Q4_K, GGMLType.Q6_K]
BLOCK_TYPES = QTYPES[3:]
MATMUL_RTOL = 1e-4


def k_values(qtype: GGMLType) -> list[int]:
    """One block, three blocks, and a row ending one block past a decode chunk (nb.CHUNK values)."""
    if qtype in (GGMLType.F32, GGMLType.F16, GGMLType.BF16):
        return [1, 48, nb.CHUNK + 44]
    values = block_geometry(qtype)[0]
    return sorted({values, 3 * values, nb.CHUNK + values})




# --------------------------------------------------------------------------------------------
# Dequantization
# --------------------------------------------------------------------------------------------

def test_f16_decode_all_bit_patterns():
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty((1, bits.size), dtype=np.float32)
    nb.get_rows(bits.view(np.uint8).reshape(1, -1), GGMLType.F16, bits.size, np.zeros(1, np.int32), out)
    want = bits.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(out[0].view(np.uint32), want.view(np.uint32))  # -0.0, NaN payloads too


GET_ROWS_CASES = [(q, False) for q in QTYPES] + [(q, True) for q in BLOCK_TYPES]


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


@pytest.mark.parametrize("qtype,random_bytes", GET_ROWS_CASES,
                         ids=[f"{q.name}-{'random-bytes' if r else 'values'}" for q, r in GET_ROWS_CASES])
def test_get_rows_bit_exact(qtype, random_bytes):
    """Every block decoder against quants.dequantize, bit for bit; random bytes reach every code."""
    rng = np.random.default_rng(int(qtype))
    N = 23
    for K in k_values(qtype):
        w = (random_blocks if random_bytes else make_weights)(qtype, N, K, rng)
        w.flags.writeable = False  # weights arrive as read-only mmap views
        for ids in (np.array([4], np.int32), np.array([22, 0, 5, 5, 13, 1, 22], np.int32)):
            out = np.empty((ids.size, K), dtype=np.float32)
            nb.get_rows(w, qtype, K, ids, out, threads=2)
            want = dequantize(w[ids], qtype, K)
            np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


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


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", QTYPES, ids=lambda q: q.name)
def test_matmul(qtype):
    rng = np.random.default_rng(100 + int(qtype))
    for K in k_values(qtype):
        for N in (5, 23):
            w = make_weights(qtype, N, K, rng)
            W = dequantize(w, qtype, K).astype(np.float64)
            for T in (1, 7):
                x = rng.standard_normal((T, K)).astype(np.float32)
                out = np.empty((T, N), dtype=np.float32)
                nb.matmul(w, int(qtype), K, x, out, threads=2)
                want = np.empty_like(out)
                ref.matmul_ref(w, qtype, K, x, want)
                bound = MATMUL_RTOL * (np.abs(x.astype(np.float64)) @ np.abs(W).T)
                err = np.abs(out.astype(np.float64) - want)
                assert (err <= bound).all(), f"{qtype.name} K={K} N={N} T={T}: max err {err.max():.3g}"


@pytest.mark.parametrize("qtype", [GGMLType.F16, GGMLType.Q4_K], ids=lambda q: q.name)
def test_matmul_prefill_rows_equal_decode(qtype):
    """Row t of a T-row product is bit-identical to the product of x[t] alone."""
    rng = np.random.default_rng(7)
    N, K, T = 23, 512, 7
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((T, K)).astype(np.float32)
    full = np.empty((T, N), dtype=np.float32)
    nb.matmul(w, int(qtype), K, x, full, threads=2)
    for t in range(T):
        one = np.empty((1, N), dtype=np.float32)
        nb.matmul(w, int(qtype), K, x[t:t + 1], one, threads=1)
        np.testing.assert_array_equal(one[0], full[t])


# --------------------------------------------------------------------------------------------
# rmsnorm, rope, attention, swiglu
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,D", [(1, 64), (7, 48), (5, 23)])
def test_rmsnorm(T, D):
    rng = np.random.default_rng(T * D)
    x = (rng.standard_normal((T, D)) * 3).astype(np.float32)
    weight = rng.standard_normal(D).astype(np.float32)
    out, want = np.empty_like(x), np.empty_like(x)
    nb.rmsnorm(x, weight, 1e-5, out, threads=2)
    ref.rmsnorm_ref(x, weight, 1e-5, want)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("style", list(RopeStyle), ids=lambda s: s.name)
@pytest.mark.parametrize("T,H,Dh,n_rot", [(1, 4, 64, 64), (7, 3, 48, 48), (7, 2, 48, 32)])
def test_rope(style, T, H, Dh, n_rot):
    rng = np.random.default_rng(Dh + n_rot)
    x = rng.standard_normal((T, H, Dh)).astype(np.float32)
    positions = np.array([0, 1, 2, 17, 100, 1000, 4095][:T] if T > 1 else [37], dtype=np.int32)
    got, want = x.copy(), x.copy()
    nb.rope(got, positions, n_rot, 10000.0, int(style), threads=2)
    ref.rope_ref(want, positions, n_rot, 10000.0, style)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[..., n_rot:], x[..., n_rot:])


CACHE_LEN = 16


@pytest.mark.parametrize("pos0,T", [(0, 1), (0, 7), (5, 1), (5, 7), (0, CACHE_LEN), (CACHE_LEN - 1, 1)])
@pytest.mark.parametrize("Hq,Hkv", [(9, 3), (4, 4)])
@pytest.mark.parametrize("Dh", [64, 48])
def test_attention(pos0, T, Hq, Hkv, Dh):
    rng = np.random.default_rng(pos0 * 100 + T + Hq + Dh)
    q = rng.standard_normal((T, Hq, Dh)).astype(np.float32)
    k_cache = rng.standard_normal((Hkv, CACHE_LEN, Dh)).astype(np.float32)
    v_cache = rng.standard_normal((Hkv, CACHE_LEN, Dh)).astype(np.float32)
    k_cache[:, pos0 + T:] = np.nan  # rows past the last query must never be read
    v_cache[:, pos0 + T:] = np.nan
    for scale in (1.0 / np.sqrt(Dh), 2.0):  # 2.0: peaked softmax, many running-max rescales
        out, want = np.empty_like(q), np.empty_like(q)
        nb.attention(q, k_cache, v_cache, pos0, scale, out, threads=2)
        ref.attention_ref(q, k_cache, v_cache, pos0, scale, want)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("T,F", [(1, 23), (7, 2500)])
def test_swiglu(T, F):
    rng = np.random.default_rng(F)
    gate = (rng.standard_normal((T, F)) * 4).astype(np.float32)
    up = rng.standard_normal((T, F)).astype(np.float32)
    out, want = np.empty_like(gate), np.empty_like(gate)
    nb.swiglu(gate, up, out, threads=2)
    ref.swiglu_ref(gate, up, want)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    nb.swiglu(gate, up, gate, threads=2)  # in place, as the model calls it
    np.testing.assert_array_equal(gate, out)


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
