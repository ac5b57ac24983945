"""The ``ggml`` kernels (kernels/ggml_x86.py): llama.cpp's x86 AVX2 arithmetic in NumPy.

Their bit-for-bit agreement with llama.cpp is shown on the real model (tests/real_model: the
SHA-256 of 256 x 49152 logits and 64 greedy tokens per golden case). Here, without llama.cpp:
the compiled matmul equals its NumPy spec bit for bit, each piece is the computation it claims
(within float32 rounding of an exact reference), and what they do not cover is refused by name.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.constants import GGMLType, RopeStyle
from edgegen.errors import UsageError
from edgegen.kernels import ggml_x86 as G
from edgegen.kernels import load_kernels, ref
from edgegen.kernels.quants import dequantize
from kernel_data import make_weights

RNG_SEED = 7


@pytest.mark.parametrize("qtype", [GGMLType.Q4_1, GGMLType.Q8_0])
@pytest.mark.parametrize("T", [1, 3])
def test_compiled_matmul_equals_its_numpy_spec(qtype, T):
    rng = np.random.default_rng(RNG_SEED)
    N, K = 37, 96
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((T, K)).astype(np.float32)
    x[0, :32] = 0.0                             # an all-zero block: d = 0, id = 0
    a, b = np.empty((T, N), np.float32), np.empty((T, N), np.float32)
    G.matmul(w, qtype, K, x, a)
    G._matmul_q_numpy(w, qtype, K, x, b)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("qtype", [GGMLType.Q4_1, GGMLType.Q8_0])
def test_matmul_is_the_product_with_8_bit_activations(qtype):
    """Q8_0 products are ref.matmul_act_q8_ref's; Q4_1 differs only by s = f16(d * sum q)."""
    rng = np.random.default_rng(RNG_SEED)
    N, K, T = 29, 128, 4
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal((T, K)).astype(np.float32)
    ours, exact = np.empty((T, N), np.float32), np.empty((T, N), np.float32)
    G.matmul(w, qtype, K, x, ours)
    ref.matmul_act_q8_ref(w, qtype, K, x, exact)
    scale = np.abs(x) @ np.abs(dequantize(w, qtype, K)).T
    tol = 1e-6 if qtype == GGMLType.Q8_0 else 2e-3     # f16 rounding of s, relative 2^-11 of the mins term
    assert (np.abs(ours - exact) <= tol * scale).all()


def test_activation_quantization_is_the_reference_rounding():
    rng = np.random.default_rng(RNG_SEED)
    x = (rng.standard_normal((3, 256)) * rng.uniform(0.01, 10, size=(3, 1))).astype(np.float32)
    q, d, s = G.quantize_q8(x, with_sum=True)
    q_ref, d_ref = ref.quantize_act_ref(x, 32)
    np.testing.assert_array_equal(q.reshape(3, 256), q_ref)
    np.testing.assert_array_equal(d, d_ref)
    unrounded = np.abs(x.reshape(3, 8, 32)).max(axis=-1) / np.float32(127)
    np.testing.assert_array_equal(s, (unrounded * q.astype(np.int32).sum(axis=-1)).astype(np.float16).astype(np.float32))


# ggml documents its AVX2 expf as within 1.45 + 0.5 ulp; the AVX-512 form measured 2.17 ulp at most here
@pytest.mark.parametrize("width, ulps", [(8, 2.0), (16, 2.5)])
def test_v_expf_is_expf_within_a_few_ulp_and_saturates(width, ulps):
    x = np.concatenate([np.linspace(-87, 88, 200_001, dtype=np.float32), np.float32([0, -0.0, 1e-30, -1e-30])])
    ours = G.v_expf(x, width).astype(np.float64)
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert (np.abs(ours - exact) <= ulps * ulp).all()
    assert G.v_expf(np.float32([-np.inf, -200.0]), width).tolist() == [0.0, 0.0]
    assert np.isinf(G.v_expf(np.float32([np.inf, 200.0]), width)).all()


def test_the_two_expf_are_two_computations():
    x = np.linspace(-20, 20, 10_001, dtype=np.float32)
    assert not np.array_equal(G.v_expf(x, 8), G.v_expf(x, 16))


def test_swiglu_is_silu_times_up():
    rng = np.random.default_rng(RNG_SEED)
    gate, up = (rng.standard_normal((2, 64)) * 8).astype(np.float32), rng.standard_normal((2, 64)).astype(np.float32)
    ours, exact = np.empty_like(gate), np.empty_like(gate)
    G.swiglu(gate, up, ours)
    ref.swiglu_ref(gate, up, exact)
    np.testing.assert_allclose(ours, exact, rtol=1e-6, atol=1e-30)
    with pytest.raises(UsageError, match="not a multiple of 8"):
        G.swiglu(gate[:, :60], up[:, :60], ours[:, :60])


def test_rmsnorm_and_rope_are_the_references_within_float32_rounding():
    rng = np.random.default_rng(RNG_SEED)
    x = rng.standard_normal((5, 96)).astype(np.float32)
    wgt = rng.uniform(0.5, 2, 96).astype(np.float32)
    ours, exact = np.empty_like(x), np.empty_like(x)
    G.rmsnorm(x, wgt, 1e-5, ours)
    ref.rmsnorm_ref(x, wgt, 1e-5, exact)
    np.testing.assert_allclose(ours, exact, rtol=3e-7 * 4, atol=0)
    for style in (RopeStyle.NORMAL, RopeStyle.NEOX):
        q = rng.standard_normal((4, 3, 64)).astype(np.float32)
        pos = np.array([0, 1, 77, 300], dtype=np.int32)
        a, b = q.copy(), q.copy()
        G.rope(a, pos, 64, 10000.0, style)
        ref.rope_ref(b, pos, 64, 10000.0, style)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)   # float32 angles (p * theta^-i by repeated products)


@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("T, pos0", [(1, 40), (5, 0), (3, 61)])
def test_attention_is_the_reference_within_float32_rounding(T, pos0, width):
    rng = np.random.default_rng(RNG_SEED)
    Hq, Hkv, Dh, C = 6, 2, 64, 96
    q = rng.standard_normal((T, Hq, Dh)).astype(np.float32)
    k, v = (rng.standard_normal((2, Hkv, C, Dh)) * 0.5).astype(np.float32)
    ours, exact = np.empty_like(q), np.empty_like(q)
    G.attention(q, k, v, pos0, 0.125, ours, width=width)
    ref.attention_ref(q, k, v, pos0, 0.125, exact)
    np.testing.assert_allclose(ours, exact, rtol=0, atol=2e-6)


def test_dot_orders_differ_only_in_rounding():
    rng = np.random.default_rng(RNG_SEED)
    a, b = rng.standard_normal((2, 50, 256)).astype(np.float32)
    exact = (a.astype(np.float64) * b).sum(axis=-1)
    results = [dot(a, b, width) for dot in (G.vec_dot_f32, G.sgemm_dot_f32) for width in (8, 16)]
    for r in results:
        np.testing.assert_allclose(r, exact, rtol=0, atol=1e-5)
    assert len({r.tobytes() for r in results}) == 4   # four orders, four roundings


def test_unsupported_weight_type_is_named():
    w = make_weights(GGMLType.Q4_0, 4, 32, np.random.default_rng(RNG_SEED))
    with pytest.raises(UsageError, match="Q4_1 and Q8_0 weights only, found Q4_0"):
        G.matmul(w, GGMLType.Q4_0, 32, np.zeros((1, 32), np.float32), np.empty((1, 4), np.float32))


def test_loaded_by_name():
    k = load_kernels("ggml")
    assert k.compiled is None and not k.int8_act and k.matmul is G.matmul and k.attention is G.attention
    wide = load_kernels("ggml-avx512")
    assert wide.matmul is G.matmul and wide.attention.keywords == {"width": 16} == wide.swiglu.keywords


def test_thread_count_does_not_change_a_bit():
    rng = np.random.default_rng(RNG_SEED)
    w = make_weights(GGMLType.Q4_1, 64, 64, rng)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    one, two = np.empty((3, 64), np.float32), np.empty((3, 64), np.float32)
    G.matmul(w, GGMLType.Q4_1, 64, x, one, threads=1)
    G.matmul(w, GGMLType.Q4_1, 64, x, two, threads=2)
    np.testing.assert_array_equal(one, two)


def test_a_model_with_other_weight_types_is_refused_at_load():
    import edgegen
    from edgegen.cli import default_model
    with pytest.raises(UsageError, match=r"Q4_1 and Q8_0 weights only; \S+ is F16"):
        edgegen.load(default_model(), kernels="ggml")
