"""What only the C++ kernels (kernels/cpp, module edgegen.kernels._cpp) promise beyond the shared
parity tests in test_kernel_parity.py: matmul within 1e-4 of sum_k |W[n,k] x[t,k]| at K = 6144,
attention across several 64-key tiles (rtol 1e-4, atol 2e-5), both bit-identical with 1 and 2
threads; no hidden state under concurrent Python threads; every malformed argument a ValueError
naming it, never a crash.
"""
from __future__ import annotations

import concurrent.futures
import functools

import numpy as np
import pytest
from kernel_data import assert_matmul_close, make_weights, run_threads

from edgegen.constants import GGMLType
from edgegen.kernels import ref
from edgegen.kernels.quants import dequantize

cpp = pytest.importorskip("edgegen.kernels._cpp", reason="C++ extension not built: run tools/dev_setup.sh")

LONG_K = 6144  # a multiple of every block size, beyond the widest FFN row of a small model


@pytest.mark.parametrize("int8_act", [True, False], ids=["int8-act", "float-act"])
@pytest.mark.parametrize("qtype", [GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1,
                                   GGMLType.Q4_K, GGMLType.Q6_K], ids=lambda q: q.name)
def test_matmul_long_rows(qtype, int8_act):
    """float32 accumulation stays within 1e-4 of the float64 reference at K = 6144, for a few rows
    (tiles) and for one (the decode dots: Q4_0 / Q4_1 two blocks per register on AVX2)."""
    rng = np.random.default_rng(200 + int(qtype))
    N, T = 9, 3
    w = make_weights(qtype, N, LONG_K, rng)
    x = rng.standard_normal((T, LONG_K)).astype(np.float32)
    matmul = functools.partial(cpp.matmul, int8_act=int8_act)
    for rows in (x, x[:1]):
        out = run_threads(matmul, np.empty((len(rows), N), np.float32), w, int(qtype), LONG_K, rows)
        assert_matmul_close(w, qtype, LONG_K, rows, out, f"{qtype.name} K={LONG_K} T={len(rows)}", int8_act)


@pytest.mark.parametrize("isa", cpp.isa_names())
@pytest.mark.parametrize("T", [4, cpp.gemm_min_tokens + 4], ids=["dot", "gemm"])
@pytest.mark.parametrize("qtype", [GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K, GGMLType.Q6_K],
                         ids=lambda q: q.name)
def test_act_quant_matches_reference_rounding(qtype, T, isa):
    """Every activation row, including an all-zero block and exact half-way values, is rounded
    as ref.quantize_act_ref rounds it, by every table's quantizer, on the dot path (T = 4) and the
    prompt GEMM (T = 20): the product then equals matmul_act_q8_ref to float32 summation, and is
    far closer to it than to the float-activation product."""
    rng = np.random.default_rng(300 + int(qtype))
    K, N = 512, 16
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((T, K)).astype(np.float32)
    x[1, :256] = 0.0
    x[2, :32] = np.arange(32, dtype=np.float32) - 15.5  # halves: x * 127 / max lands on .5 often
    x[2, 0] = 127.0
    x[3, 32:64] = (np.arange(32, dtype=np.float32) - 16) * np.float32(0.5)  # more halves, another block
    exact, rounded, ours = (np.empty((T, N), np.float32) for _ in range(3))
    ref.matmul_ref(w, qtype, K, x, exact)
    ref.matmul_act_q8_ref(w, qtype, K, x, rounded)
    cpp.matmul(w, int(qtype), K, x, ours, threads=2, isa=isa)
    assert np.abs(ours - rounded).max() < 1e-3 * np.abs(ours - exact).max()


@pytest.mark.parametrize("isa", cpp.isa_names())
@pytest.mark.parametrize("qtype", [GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K,
                                   GGMLType.Q6_K], ids=lambda q: q.name)
def test_gemm_decoders_bit_exact(qtype, isa):
    """The prompt GEMM's weight decoders (a table's own, e.g. decode_q4_1_avx2, or quant_formats.cpp's)
    give quants.dequantize's values bit for bit: with x = 127 * identity (rounded to 8 bits exactly:
    d = 1, q = 127), out[t, n] is the single product W[n, t] * 127, rounded once."""
    K = 512 if qtype in (GGMLType.Q4_K, GGMLType.Q6_K) else 288  # 288: a partial 256-value chunk
    N = 7
    w = make_weights(qtype, N, K, np.random.default_rng(400 + int(qtype)))
    x = (np.float32(127) * np.eye(K, dtype=np.float32))
    out = np.empty((K, N), np.float32)
    cpp.matmul(w, int(qtype), K, x, out, threads=2, isa=isa)
    want = (dequantize(w, qtype, K) * np.float32(127)).T + np.float32(0)  # + 0: -0.0 sums to +0.0 in the tile
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


def test_isa_names_and_unknown_isa():
    names = cpp.isa_names()
    assert names[0] == "scalar" and cpp.best_isa() == names[-1]
    w = make_weights(GGMLType.Q8_0, 4, 64, np.random.default_rng(1))
    with pytest.raises(ValueError, match="isa must be 'auto' or one this CPU runs"):
        cpp.matmul(w, int(GGMLType.Q8_0), 64, np.zeros((1, 64), np.float32), np.empty((1, 4), np.float32), isa="sse9")


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


def test_act_quant_survives_subnormal_and_non_finite_rows():
    """Rows of subnormals, inf or NaN give defined (finite or NaN) outputs, never a crash, and
    a subnormal row is rounded like any other (its products are simply tiny)."""
    w = make_weights(GGMLType.Q8_0, 8, 64, np.random.default_rng(2))
    x = np.zeros((3, 64), np.float32)
    x[0] = 1e-40
    x[1, 3] = np.inf
    x[2, 5] = np.nan
    out = np.empty((3, 8), np.float32)
    cpp.matmul(w, int(GGMLType.Q8_0), 64, x, out, threads=2)
    assert np.abs(out[0]).max() < 1e-30


def tiny_decoder():
    """A one-layer decoder over random F32 weights: dim 32, 4 heads of 8 (2 KV heads), ffn 48, vocab 40."""
    rng = np.random.default_rng(3)
    dims = (32, 4, 2, 8, 48, 8, 40, 1, 0)

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint8), int(GGMLType.F32))

    mats = [mat(40, 32), mat(40, 32), mat(32, 32), mat(16, 32), mat(16, 32), mat(32, 32), mat(48, 32), mat(48, 32),
            mat(32, 48)]
    vecs = [np.ones(32, np.float32), np.ones(32, np.float32), np.ones(32, np.float32), None, None, None]
    return dims, mats, vecs


def decoder_call(tokens=(1, 2), pos0=0, cache_shape=(1, 2, 8, 8), logits_rows=1, **change):
    dims, mats, vecs = tiny_decoder()
    d = cpp.make_decoder(change.get("dims", dims), 1e-5, 10000.0, change.get("mats", mats), change.get("vecs", vecs))
    k = np.zeros(cache_shape, np.float32)
    v = np.zeros(cache_shape, np.float32)
    logits = np.full((logits_rows, 40), np.nan, np.float32)
    d.forward(np.asarray(tokens, np.int32), pos0, k, v, logits, False, 2)
    return logits, k, v


DECODER_BAD_CALLS = {
    "token out of vocab": (lambda: decoder_call(tokens=(1, 40)), r"tokens\[1\] must be in \[0, vocab=40\)"),
    "past the cache": (lambda: decoder_call(pos0=7), "pos0 \\+ T must fit the cache"),
    "cache shape": (lambda: decoder_call(cache_shape=(1, 3, 8, 8)), "k_cache.shape\\[1\\] must equal n_kv_heads"),
    "logits rows": (lambda: decoder_call(logits_rows=2), "logits.shape\\[0\\] must equal 1"),
    "missing layer matrix": (lambda: decoder_call(mats=tiny_decoder()[1][:-1]), "mats must hold"),
    "wrong matrix rows": (lambda: decoder_call(mats=tiny_decoder()[1][:2] + [tiny_decoder()[1][3]] + tiny_decoder()[1][3:]),
                          r"mats\[2\].shape\[0\] must equal"),
    "norm missing": (lambda: decoder_call(vecs=[None] + tiny_decoder()[2][1:]), r"vecs\[0\] must be a float32 array"),
    "heads not a multiple": (lambda: decoder_call(dims=(32, 3, 2, 8, 48, 8, 40, 1, 0)), "multiple of n_kv_heads"),
}
BAD_CALLS.update({f"Decoder: {name}": case for name, case in DECODER_BAD_CALLS.items()})


def test_decoder_good_call_writes_logits_and_its_cache_rows_only():
    logits, k, v = decoder_call(tokens=(1, 2, 3), pos0=2)
    assert np.isfinite(logits).all() and logits.std() > 0
    for cache in (k, v):
        assert (cache[:, :, 2:5] != 0).any(axis=-1).all()           # positions 2..4 written, every head
        assert (cache[:, :, :2] == 0).all() and (cache[:, :, 5:] == 0).all()


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_arguments_raise_value_error(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call()
