"""Parity of every compiled kernel table (C++ ``_cpp`` with each dot table this CPU runs, its
float-activation variant, and Numba ``numba_cpu``, each loaded through ``load_kernels``) with the
NumPy references in kernels/ref.py and kernels/quants.py.

Every test runs once per implementation (fixture ``impl``). Tolerances, the same for all:
- get_rows (so every block decoder) and the f16 decoder: bit-exact, NaN payloads and -0.0 included;
- matmul: |err| <= 1e-4 * sum_k |W[n,k] x[t,k]| (float32 dot-product rounding) against matmul_ref,
  or for the 8-bit-activation tables (cpp, cpp-scalar, cpp-avx2) against matmul_act_q8_ref, which
  rounds x exactly as the kernels do; row t of a T-row product bit-identical to the product of
  x[t] alone (prefill == decode) below GEMM_MIN_TOKENS rows; from there on (the prompt GEMM,
  cpp/gemm.h) bit-identical to row t of a product with more rows;
- rmsnorm, swiglu: rtol 1e-6, atol 1e-7; rope: rtol 1e-6, atol 1e-6 (columns past n_rot untouched);
- attention (float32 online softmax): rtol 1e-4, atol 2e-5; cache rows past the last query are NaN
  and must never be read;
- every kernel gives bit-identical results with 1 and 2 threads; in-place calls equal out-of-place.
"""
from __future__ import annotations

import numpy as np
import pytest
from kernel_data import THREADS, assert_matmul_close, make_weights, random_blocks, run_threads

from edgegen.constants import QK_K, GGMLType, RopeStyle, block_geometry
from edgegen.errors import MissingDependencyError, UsageError
from edgegen.kernels import Kernels, load_kernels, ref
from edgegen.kernels.quants import dequantize

FLOAT_TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16]
BLOCK_TYPES = [GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K, GGMLType.Q6_K]
QTYPES = FLOAT_TYPES + BLOCK_TYPES
GEMM_MIN_TOKENS = 16  # cpp/gemm.h kGemmMinTokens; checked against the module in test_gemm_rows_do_not_depend_on_batch
DECODE_CHUNK = QK_K  # values both implementations decode per step (numba_cpu.CHUNK, the C++ 256-value chunk)


@pytest.fixture(params=["cpp", "cpp-scalar", "cpp-avx2", "cpp-neon", "cpp-float", "numba"])
def impl(request) -> Kernels:
    try:
        return load_kernels(request.param)
    except MissingDependencyError as e:  # C++ extension not built: run tools/dev_setup.sh
        pytest.skip(str(e))
    except UsageError as e:  # a SIMD table this CPU does not run
        pytest.skip(str(e))


def k_values(qtype: GGMLType) -> list[int]:
    """One, two and three blocks, and a row ending one block (floats: 44 values) past a decode
    chunk: odd and even block counts (the AVX2 Q4_0 decode dot takes blocks in pairs)."""
    if qtype in FLOAT_TYPES:
        return [1, 48, DECODE_CHUNK + 44]
    values = block_geometry(qtype)[0]
    return sorted({values, 2 * values, 3 * values, DECODE_CHUNK + values})


# --------------------------------------------------------------------------------------------
# Block decoding: get_rows
# --------------------------------------------------------------------------------------------

def test_f16_decode_all_bit_patterns(impl):
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = run_threads(impl.get_rows, np.empty((1, bits.size), dtype=np.float32),
                      bits.view(np.uint8).reshape(1, -1), int(GGMLType.F16), bits.size, np.zeros(1, np.int32))
    want = bits.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(out[0].view(np.uint32), want.view(np.uint32))  # -0.0, NaN payloads too


GET_ROWS_CASES = [(q, False) for q in QTYPES] + [(q, True) for q in BLOCK_TYPES]


@pytest.mark.parametrize("qtype,random_bytes", GET_ROWS_CASES,
                         ids=[f"{q.name}-{'random-bytes' if r else 'values'}" for q, r in GET_ROWS_CASES])
def test_get_rows_bit_exact(impl, qtype, random_bytes):
    """Every block decoder against quants.dequantize, bit for bit; random bytes reach every code."""
    rng = np.random.default_rng(int(qtype))
    N = 23
    for K in k_values(qtype):
        w = (random_blocks if random_bytes else make_weights)(qtype, N, K, rng)
        w.flags.writeable = False  # weights arrive as read-only mmap views
        for ids in (np.array([4], np.int32), np.array([22, 0, 5, 5, 13, 1, 22], np.int32)):
            out = run_threads(impl.get_rows, np.empty((ids.size, K), np.float32), w, int(qtype), K, ids)
            want = dequantize(w[ids], qtype, K)
            np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", QTYPES, ids=lambda q: q.name)
def test_matmul(impl, qtype):
    rng = np.random.default_rng(100 + int(qtype))
    for K in k_values(qtype):
        for N in (5, 23):
            w = make_weights(qtype, N, K, rng)
            for T in (1, 7, GEMM_MIN_TOKENS, 37):
                x = rng.standard_normal((T, K)).astype(np.float32)
                out = run_threads(impl.matmul, np.empty((T, N), np.float32), w, int(qtype), K, x)
                assert_matmul_close(w, qtype, K, x, out, f"{qtype.name} K={K} N={N} T={T}", impl.int8_act)


# Formats whose prompt products run as register tiles (cpp/vec_dot.h TileQ8) on SIMD tables: the
# same integer sums, added in another order than the one-row decode dot.
TILED = {GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K, GGMLType.F32, GGMLType.F16, GGMLType.BF16}


@pytest.mark.parametrize("qtype", [GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1,
                                   GGMLType.Q4_K, GGMLType.Q6_K], ids=lambda q: q.name)
def test_matmul_batch_rows_equal_single_rows(impl, qtype):
    """Row t of a T-row product equals the product of x[t] alone (prefill == decode): bit for bit,
    or to float32 summation (1e-6 of sum |w x|) where a SIMD table tiles the prompt product."""
    rng = np.random.default_rng(7)
    N, K, T = 23, 512, 9
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((T, K)).astype(np.float32)
    full = np.empty((T, N), dtype=np.float32)
    impl.matmul(w, int(qtype), K, x, full, threads=2)
    for t in range(T):
        one = np.empty((1, N), dtype=np.float32)
        impl.matmul(w, int(qtype), K, x[t:t + 1], one, threads=1)
        if qtype in TILED and impl.name in ("cpp", "cpp-avx2"):
            scale = np.abs(x[t]) @ np.abs(dequantize(w, qtype, K)).T
            assert (np.abs(one[0] - full[t]) <= 1e-6 * scale).all()
        else:
            np.testing.assert_array_equal(one[0], full[t])


@pytest.mark.parametrize("qtype", QTYPES, ids=lambda q: q.name)
def test_gemm_rows_do_not_depend_on_batch(impl, qtype):
    """On the prompt GEMM (from GEMM_MIN_TOKENS rows) row t's result is the same bits whatever the
    number of rows around it: the first 16 rows of a 53-row product equal a 16-row product, for
    N = 31 rows of weights (a partial register tile and task) and K spanning two decode chunks."""
    if impl.compiled is not None:
        assert impl.compiled.gemm_min_tokens == GEMM_MIN_TOKENS
    rng = np.random.default_rng(200 + int(qtype))
    N, K = 31, 2 * DECODE_CHUNK + (44 if qtype in FLOAT_TYPES else block_geometry(qtype)[0])
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((53, K)).astype(np.float32)
    full = run_threads(impl.matmul, np.empty((53, N), np.float32), w, int(qtype), K, x)
    part = run_threads(impl.matmul, np.empty((GEMM_MIN_TOKENS, N), np.float32), w, int(qtype), K, x[:GEMM_MIN_TOKENS])
    np.testing.assert_array_equal(full[:GEMM_MIN_TOKENS], part)
    assert_matmul_close(w, qtype, K, x, full, f"{qtype.name} K={K} N={N} T=53", impl.int8_act)


# --------------------------------------------------------------------------------------------
# rmsnorm, rope, attention, swiglu
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,D", [(1, 64), (7, 48), (5, 23)])
def test_rmsnorm(impl, T, D):
    rng = np.random.default_rng(T * D)
    x = (rng.standard_normal((T, D)) * 3).astype(np.float32)
    weight = rng.standard_normal(D).astype(np.float32)
    want = np.empty_like(x)
    ref.rmsnorm_ref(x, weight, 1e-5, want)
    out = run_threads(impl.rmsnorm, np.empty_like(x), x, weight, 1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    impl.rmsnorm(x, weight, 1e-5, x, threads=2)  # in place
    np.testing.assert_array_equal(x, out)


@pytest.mark.parametrize("style", list(RopeStyle), ids=lambda s: s.name)
@pytest.mark.parametrize("T,H,Dh,n_rot", [(1, 4, 64, 64), (7, 3, 48, 48), (7, 2, 48, 32)])
def test_rope(impl, style, T, H, Dh, n_rot):
    rng = np.random.default_rng(Dh + n_rot)
    x = rng.standard_normal((T, H, Dh)).astype(np.float32)
    positions = np.array([0, 1, 2, 17, 100, 1000, 4095][:T] if T > 1 else [37], dtype=np.int32)
    want = x.copy()
    ref.rope_ref(want, positions, n_rot, 10000.0, style)
    results = []
    for threads in THREADS:  # rope works in place, so run_threads does not fit
        got = x.copy()
        impl.rope(got, positions, n_rot, 10000.0, int(style), threads=threads)
        results.append(got)
    np.testing.assert_array_equal(results[0].view(np.uint32), results[1].view(np.uint32))
    np.testing.assert_allclose(results[0], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(results[0][..., n_rot:], x[..., n_rot:])


CACHE_LEN = 16


@pytest.mark.parametrize("pos0,T", [(0, 1), (0, 7), (5, 1), (5, 7), (0, CACHE_LEN), (CACHE_LEN - 1, 1)])
@pytest.mark.parametrize("Hq,Hkv", [(9, 3), (4, 4)])
@pytest.mark.parametrize("Dh", [64, 48])
def test_attention(impl, pos0, T, Hq, Hkv, Dh):
    rng = np.random.default_rng(pos0 * 100 + T + Hq + Dh)
    q = rng.standard_normal((T, Hq, Dh)).astype(np.float32)
    k_cache = rng.standard_normal((Hkv, CACHE_LEN, Dh)).astype(np.float32)
    v_cache = rng.standard_normal((Hkv, CACHE_LEN, Dh)).astype(np.float32)
    k_cache[:, pos0 + T:] = np.nan  # rows past the last query must never be read
    v_cache[:, pos0 + T:] = np.nan
    for scale in (1.0 / np.sqrt(Dh), 2.0):  # 2.0: a peaked softmax, many running-max rescales
        want = np.empty_like(q)
        ref.attention_ref(q, k_cache, v_cache, pos0, scale, want)
        out = run_threads(impl.attention, np.empty_like(q), q, k_cache, v_cache, pos0, scale)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("T,F", [(1, 23), (7, 2500)])
def test_swiglu(impl, T, F):
    rng = np.random.default_rng(F)
    gate = (rng.standard_normal((T, F)) * 4).astype(np.float32)
    up = rng.standard_normal((T, F)).astype(np.float32)
    # the far ends: silu's exp over- or underflows there in a naive vectorisation
    gate.flat[:6] = [-200.0, -88.0, -30.0, 30.0, 88.0, 200.0][:gate.size]
    want = np.empty_like(gate)
    ref.swiglu_ref(gate, up, want)
    out = run_threads(impl.swiglu, np.empty_like(gate), gate, up)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    impl.swiglu(gate, up, gate, threads=2)  # in place, as the model calls it
    np.testing.assert_array_equal(gate, out)
