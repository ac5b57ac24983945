"""Parity of the C++ kernels (kernels/cpp, module edgegen.kernels._cpp) with kernels/ref.py.

Tolerances: block decoding (get_rows) is bit-exact; matmul is held to 1e-4 of
sum_k |W[n,k] x[t,k]| (the scale of a float32 dot product's rounding error), also at
K = 6144; rmsnorm / rope / swiglu to float32 rounding; attention (float32 online
softmax) to 1e-4. Every kernel gives bit-identical results with 1 and 2 threads, and
every malformed argument is a ValueError naming it, never a crash.
"""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from kernel_data import make_weights, random_blocks

from edgegen.constants import GGMLType, RopeStyle, block_geometry
from edgegen.kernels import ref
from edgegen.kernels.quants import dequantize

cpp = pytest.importorskip("edgegen.kernels._cpp", reason="C++ extension not built: run tools/dev_setup.sh")

FLOAT_TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16]
BLOCK_TYPES = [GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K, GGMLType.Q6_K]
QTYPES = FLOAT_TYPES + BLOCK_TYPES
MATMUL_RTOL = 1e-4
LONG_K = 6144  # a multiple of every block size, beyond the widest FFN row of a small model
THREADS = (1, 2)


def k_values(qtype: GGMLType) -> list[int]:
    """One block and three blocks; float types: a short row and one with a ragged 256-value chunk."""
    if qtype in FLOAT_TYPES:
        return [48, 300]
    values = block_geometry(qtype)[0]
    return [values, 3 * values]




def run_threads(fn, out: np.ndarray, *args) -> np.ndarray:
    """Run ``fn(*args, out, threads=...)`` with 1 and 2 threads; assert equal bits; return the result."""
    results = []
    for threads in THREADS:
        out[...] = np.nan
        fn(*args, out, threads=threads)
        results.append(out.copy())
    np.testing.assert_array_equal(results[0].view(np.uint32), results[1].view(np.uint32))
    return results[0]


# --------------------------------------------------------------------------------------------
# Block decoding: get_rows
# --------------------------------------------------------------------------------------------

def test_f16_decode_all_bit_patterns():
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty((1, bits.size), dtype=np.float32)
    cpp.get_rows(bits.view(np.uint8).reshape(1, -1), int(GGMLType.F16), bits.size, np.zeros(1, np.int32), out)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(out[0]), nan)
    np.testing.assert_array_equal(out[0, ~nan].view(np.uint32), want[~nan].view(np.uint32))  # keeps -0.0


GET_ROWS_CASES = [(q, False) for q in QTYPES] + [(q, True) for q in BLOCK_TYPES]


@pytest.mark.parametrize("qtype,random_bytes", GET_ROWS_CASES,
                         ids=[f"{q.name}-{'random-bytes' if r else 'values'}" for q, r in GET_ROWS_CASES])
def test_get_rows_bit_exact(qtype, random_bytes):
    """Every block decoder against quants.dequantize, bit for bit; random bytes reach every code."""
    rng = np.random.default_rng(int(qtype))
    N = 23
    for K in k_values(qtype):
        w = random_blocks(qtype, N, K, rng) if random_bytes else make_weights(qtype, N, K, rng)
        for ids in (np.array([4], np.int32), np.array([22, 0, 5, 5, 13, 1, 22], np.int32)):
            out = run_threads(cpp.get_rows, np.empty((ids.size, K), np.float32), w, int(qtype), K, ids)
            want = dequantize(w[ids], qtype, K)
            np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------

def assert_matmul_close(w, qtype, K, x, out, label):
    want = np.empty_like(out)
    ref.matmul_ref(w, qtype, K, x, want)
    W = dequantize(w, qtype, K).astype(np.float64)
    bound = MATMUL_RTOL * (np.abs(x.astype(np.float64)) @ np.abs(W).T)
    err = np.abs(out.astype(np.float64) - want)
    assert (err <= bound).all(), f"{label}: max err {err.max():.3g}, max allowed {bound.min():.3g}"


@pytest.mark.parametrize("qtype", QTYPES, ids=lambda q: q.name)
def test_matmul(qtype):
    rng = np.random.default_rng(100 + int(qtype))
    for K in k_values(qtype):
        for N in (5, 23):
            w = make_weights(qtype, N, K, rng)
            for T in (1, 7):
                x = rng.standard_normal((T, K)).astype(np.float32)
                out = run_threads(cpp.matmul, np.empty((T, N), np.float32), w, int(qtype), K, x)
                assert_matmul_close(w, qtype, K, x, out, f"{qtype.name} K={K} N={N} T={T}")


@pytest.mark.parametrize("qtype", [GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q6_K],
                         ids=lambda q: q.name)
def test_matmul_long_rows(qtype):
    """float32 accumulation stays within 1e-4 of the float64 reference at K = 6144."""
    rng = np.random.default_rng(200 + int(qtype))
    N, T = 9, 3
    w = make_weights(qtype, N, LONG_K, rng)
    x = rng.standard_normal((T, LONG_K)).astype(np.float32)
    out = run_threads(cpp.matmul, np.empty((T, N), np.float32), w, int(qtype), LONG_K, x)
    assert_matmul_close(w, qtype, LONG_K, x, out, f"{qtype.name} K={LONG_K}")


@pytest.mark.parametrize("qtype", [GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q6_K], ids=lambda q: q.name)
def test_matmul_batch_rows_equal_single_rows(qtype):
    """Row t of a T-row product is bit-identical to the product of x[t] alone (prefill == decode)."""
    rng = np.random.default_rng(7)
    N, K, T = 23, 512, 7
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((T, K)).astype(np.float32)
    full = np.empty((T, N), dtype=np.float32)
    cpp.matmul(w, int(qtype), K, x, full, threads=2)
    for t in range(T):
        one = np.empty((1, N), dtype=np.float32)
        cpp.matmul(w, int(qtype), K, x[t:t + 1], one, threads=1)
        np.testing.assert_array_equal(one[0], full[t])


def test_concurrent_calls_from_python_threads():
    """No hidden shared state: four Python threads (GIL released) get the sequential results."""
    rng = np.random.default_rng(11)
    w = make_weights(GGMLType.Q4_K, 64, 1024, rng)
    xs = [rng.standard_normal((5, 1024)).astype(np.float32) for _ in range(8)]

    def product(x):
        out = np.empty((5, 64), np.float32)
        cpp.matmul(w, int(GGMLType.Q4_K), 1024, x, out, threads=2)
        return out

    sequential = [product(x) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        concurrent_results = list(pool.map(product, xs))
    for a, b in zip(sequential, concurrent_results):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# rmsnorm, rope, attention, swiglu
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,D", [(1, 64), (7, 48), (5, 23)])
def test_rmsnorm(T, D):
    rng = np.random.default_rng(T * D)
    x = (rng.standard_normal((T, D)) * 3).astype(np.float32)
    weight = rng.standard_normal(D).astype(np.float32)
    want = np.empty_like(x)
    ref.rmsnorm_ref(x, weight, 1e-5, want)
    out = run_threads(cpp.rmsnorm, np.empty_like(x), x, weight, 1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    cpp.rmsnorm(x, weight, 1e-5, x, threads=2)  # in place
    np.testing.assert_array_equal(x, out)


@pytest.mark.parametrize("style", list(RopeStyle), ids=lambda s: s.name)
@pytest.mark.parametrize("T,H,Dh,n_rot", [(1, 4, 64, 64), (7, 3, 48, 48), (7, 2, 48, 32)])
def test_rope(style, T, H, Dh, n_rot):
    rng = np.random.default_rng(Dh + n_rot)
    x = rng.standard_normal((T, H, Dh)).astype(np.float32)
    positions = np.array([0, 1, 2, 17, 100, 1000, 4095][:T] if T > 1 else [37], dtype=np.int32)
    want = x.copy()
    ref.rope_ref(want, positions, n_rot, 10000.0, style)
    results = []
    for threads in THREADS:
        got = x.copy()
        cpp.rope(got, positions, n_rot, 10000.0, int(style), threads=threads)
        results.append(got)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(results[0][..., n_rot:], x[..., n_rot:])


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
    for scale in (1.0 / np.sqrt(Dh), 2.0):  # 2.0: a peaked softmax, many running-max rescales
        want = np.empty_like(q)
        ref.attention_ref(q, k_cache, v_cache, pos0, scale, want)
        out = run_threads(cpp.attention, np.empty_like(q), q, k_cache, v_cache, pos0, scale)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5)


def test_attention_long_context():
    """Several 64-key tiles, the max rising late: the online rescaling is exercised across tiles."""
    rng = np.random.default_rng(5)
    Hq, Hkv, C, Dh, T, pos0 = 4, 2, 300, 64, 3, 290
    q = rng.standard_normal((T, Hq, Dh)).astype(np.float32)
    k_cache = rng.standard_normal((Hkv, C, Dh)).astype(np.float32)
    k_cache[:, 250] *= 4  # a dominant key in the last tile
    v_cache = rng.standard_normal((Hkv, C, Dh)).astype(np.float32)
    want = np.empty_like(q)
    ref.attention_ref(q, k_cache, v_cache, pos0, 0.125, want)
    out = run_threads(cpp.attention, np.empty_like(q), q, k_cache, v_cache, pos0, 0.125)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("T,F", [(1, 23), (7, 2500)])
def test_swiglu(T, F):
    rng = np.random.default_rng(F)
    gate = (rng.standard_normal((T, F)) * 4).astype(np.float32)
    up = rng.standard_normal((T, F)).astype(np.float32)
    want = np.empty_like(gate)
    ref.swiglu_ref(gate, up, want)
    out = run_threads(cpp.swiglu, np.empty_like(gate), gate, up)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    cpp.swiglu(gate, up, gate, threads=2)  # in place, as the model calls it
    np.testing.assert_array_equal(gate, out)


# --------------------------------------------------------------------------------------------
# Bad arguments: ValueError naming the argument, never a crash
# --------------------------------------------------------------------------------------------

F32 = np.float32
Q8 = int(GGMLType.Q8_0)
W_Q8 = make_weights(GGMLType.Q8_0, 5, 64, np.random.default_rng(0))       # N=5, K=64 (68 bytes a row)
W_F32 = make_weights(GGMLType.F32, 32, 32, np.random.default_rng(0))      # N=K=32
X = np.zeros((3, 64), F32)
OUT = np.zeros((3, 5), F32)
IDS = np.array([0, 4], np.int32)
ROWS = np.zeros((2, 64), F32)
NORM_X, NORM_W = np.ones((2, 8), F32), np.ones(8, F32)
ROPE_POS = np.arange(3, dtype=np.int32)
Q, KV = np.zeros((2, 6, 16), F32), np.zeros((3, 8, 16), F32)
GATE = np.zeros((2, 8), F32)


def rope_x():
    return np.zeros((3, 2, 16), F32)


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def overlap_buf():
    return np.zeros((3, 8), F32)


BAD_CALLS = {
    # matmul
    "matmul-qtype": (lambda: cpp.matmul(W_Q8, 6, 64, X, OUT), "unsupported qtype"),
    "matmul-K-not-block-multiple": (lambda: cpp.matmul(W_Q8, Q8, 48, X[:, :48], OUT), "K must be"),
    "matmul-K-zero": (lambda: cpp.matmul(W_Q8, Q8, 0, X, OUT), "K must be"),
    "matmul-w-row-bytes": (lambda: cpp.matmul(np.zeros((5, 66), np.uint8), Q8, 64, X, OUT), r"w.shape\[1\]"),
    "matmul-w-dtype": (lambda: cpp.matmul(W_Q8.view(np.int8), Q8, 64, X, OUT), "w must be"),
    "matmul-w-ndim": (lambda: cpp.matmul(W_Q8.reshape(-1), Q8, 64, X, OUT), "w must be"),
    "matmul-w-non-contiguous": (lambda: cpp.matmul(np.zeros((5, 136), np.uint8)[:, ::2], Q8, 64, X, OUT),
                                "w must be"),
    "matmul-x-dtype": (lambda: cpp.matmul(W_Q8, Q8, 64, X.astype(np.float64), OUT), "x must be"),
    "matmul-x-K": (lambda: cpp.matmul(W_Q8, Q8, 64, np.zeros((3, 32), F32), OUT), r"x.shape\[1\]"),
    "matmul-x-non-contiguous": (lambda: cpp.matmul(W_Q8, Q8, 64, np.zeros((3, 128), F32)[:, ::2], OUT),
                                "x must be"),
    "matmul-x-not-array": (lambda: cpp.matmul(W_Q8, Q8, 64, [[0.0] * 64] * 3, OUT), "x must be"),
    "matmul-out-T": (lambda: cpp.matmul(W_Q8, Q8, 64, X, np.zeros((2, 5), F32)), r"out.shape\[0\]"),
    "matmul-out-N": (lambda: cpp.matmul(W_Q8, Q8, 64, X, np.zeros((3, 4), F32)), r"out.shape\[1\]"),
    "matmul-out-readonly": (lambda: cpp.matmul(W_Q8, Q8, 64, X, readonly(OUT)), "out must be a writable"),
    "matmul-out-is-x": (lambda: (lambda a: cpp.matmul(W_F32, 0, 32, a, a))(np.zeros((2, 32), F32)),
                        "out must not overlap x"),
    "matmul-threads-zero": (lambda: cpp.matmul(W_Q8, Q8, 64, X, OUT, threads=0), "threads"),
    "matmul-threads-negative": (lambda: cpp.matmul(W_Q8, Q8, 64, X, OUT, threads=-2), "threads"),
    # get_rows
    "get_rows-id-too-large": (lambda: cpp.get_rows(W_Q8, Q8, 64, np.array([0, 5], np.int32), ROWS),
                              r"ids\[1\]"),
    "get_rows-id-negative": (lambda: cpp.get_rows(W_Q8, Q8, 64, np.array([-1, 0], np.int32), ROWS),
                             r"ids\[0\]"),
    "get_rows-ids-dtype": (lambda: cpp.get_rows(W_Q8, Q8, 64, IDS.astype(np.int64), ROWS), "ids must be"),
    "get_rows-ids-ndim": (lambda: cpp.get_rows(W_Q8, Q8, 64, IDS.reshape(1, 2), ROWS), "ids must be"),
    "get_rows-out-K": (lambda: cpp.get_rows(W_Q8, Q8, 64, IDS, np.zeros((2, 32), F32)), r"out.shape\[1\]"),
    "get_rows-out-T": (lambda: cpp.get_rows(W_Q8, Q8, 64, IDS, np.zeros((3, 64), F32)), r"out.shape\[0\]"),
    "get_rows-qtype": (lambda: cpp.get_rows(W_Q8, 99, 64, IDS, ROWS), "unsupported qtype"),
    # rmsnorm
    "rmsnorm-weight-shape": (lambda: cpp.rmsnorm(NORM_X, np.ones(7, F32), 1e-5, np.zeros((2, 8), F32)),
                             r"weight.shape\[0\]"),
    "rmsnorm-x-ndim": (lambda: cpp.rmsnorm(NORM_W, NORM_W, 1e-5, np.zeros((2, 8), F32)), "x must be"),
    "rmsnorm-out-shape": (lambda: cpp.rmsnorm(NORM_X, NORM_W, 1e-5, np.zeros((2, 9), F32)), r"out.shape\[1\]"),
    "rmsnorm-eps-negative": (lambda: cpp.rmsnorm(NORM_X, NORM_W, -1.0, np.zeros((2, 8), F32)), "eps"),
    "rmsnorm-threads": (lambda: cpp.rmsnorm(NORM_X, NORM_W, 1e-5, np.zeros((2, 8), F32), threads=0), "threads"),
    # rope
    "rope-n_rot-odd": (lambda: cpp.rope(rope_x(), ROPE_POS, 15, 1e4, 0), "n_rot"),
    "rope-n_rot-above-Dh": (lambda: cpp.rope(rope_x(), ROPE_POS, 18, 1e4, 0), "n_rot"),
    "rope-n_rot-zero": (lambda: cpp.rope(rope_x(), ROPE_POS, 0, 1e4, 0), "n_rot"),
    "rope-style": (lambda: cpp.rope(rope_x(), ROPE_POS, 16, 1e4, 1), "style"),
    "rope-theta": (lambda: cpp.rope(rope_x(), ROPE_POS, 16, 0.0, 0), "theta"),
    "rope-positions-length": (lambda: cpp.rope(rope_x(), ROPE_POS[:2], 16, 1e4, 0), r"positions.shape\[0\]"),
    "rope-positions-dtype": (lambda: cpp.rope(rope_x(), ROPE_POS.astype(np.int64), 16, 1e4, 0),
                             "positions must be"),
    "rope-x-non-contiguous": (lambda: cpp.rope(np.zeros((3, 2, 32), F32)[..., ::2], ROPE_POS, 16, 1e4, 0),
                              "x must be"),
    "rope-x-readonly": (lambda: cpp.rope(readonly(rope_x()), ROPE_POS, 16, 1e4, 0), "x must be a writable"),
    # attention
    "attention-groups": (lambda: cpp.attention(np.zeros((2, 5, 16), F32), KV, KV, 0, 1.0,
                                               np.zeros((2, 5, 16), F32)),
                         "Hq % Hkv"),
    "attention-cache-overflow": (lambda: cpp.attention(Q, KV, KV, 7, 1.0, np.zeros_like(Q)), "pos0 \\+ T"),
    "attention-pos0-negative": (lambda: cpp.attention(Q, KV, KV, -1, 1.0, np.zeros_like(Q)), "pos0"),
    "attention-k-Dh": (lambda: cpp.attention(Q, np.zeros((3, 8, 8), F32), KV, 0, 1.0, np.zeros_like(Q)),
                       r"k_cache.shape\[2\]"),
    "attention-v-shape": (lambda: cpp.attention(Q, KV, np.zeros((3, 9, 16), F32), 0, 1.0, np.zeros_like(Q)),
                          r"v_cache.shape\[1\]"),
    "attention-out-shape": (lambda: cpp.attention(Q, KV, KV, 0, 1.0, np.zeros((2, 6, 8), F32)),
                            r"out.shape\[2\]"),
    "attention-q-ndim": (lambda: cpp.attention(Q[0], KV, KV, 0, 1.0, np.zeros_like(Q)), "q must be"),
    "attention-out-is-q": (lambda: (lambda a: cpp.attention(a, KV, KV, 0, 1.0, a))(np.zeros_like(Q)),
                           "out must not overlap q"),
    # swiglu
    "swiglu-up-shape": (lambda: cpp.swiglu(GATE, np.zeros((2, 7), F32), np.zeros_like(GATE)), r"up.shape\[1\]"),
    "swiglu-out-shape": (lambda: cpp.swiglu(GATE, GATE, np.zeros((1, 8), F32)), r"out.shape\[0\]"),
    "swiglu-out-partial-overlap": (lambda: (lambda b: cpp.swiglu(b[0:2], GATE, b[1:3]))(overlap_buf()),
                                   "out must not overlap gate"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_arguments_raise_value_error(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call()
