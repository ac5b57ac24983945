"""The diffusion kernels of edgegen.kernels._cpp (cpp/diffusion.h) against their NumPy references
(kernels/diffusion_ref.py) and torch.nn.functional, on awkward shapes: odd sizes, channels not a
multiple of 8, B = 1 and 2. Every output buffer is poisoned with NaN first (an unwritten element
fails), 1 and 2 threads must give the same bits (run_threads), and malformed arguments raise
ValueError naming the argument.

Kernels with SIMD loops run once per table this CPU has (``isa``), so the portable path is tested too.
Tolerances: float32 sums against float64 references, |err| <= 2e-6 * sum_k |w x| + 1e-6 for
convolutions (K up to ~1000) and 1e-5 absolute for attention, norms and activations of O(1) values.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from kernel_data import run_threads

from edgegen.kernels import diffusion_ref as R

cpp = pytest.importorskip("edgegen.kernels._cpp", reason="C++ extension not built: run tools/dev_setup.sh")
torch = pytest.importorskip("torch")
F = torch.nn.functional

F32, F16 = 0, 1
ATOL = 1e-5


def _conv_case(rng, b, h, w, cin, cout, k, dtype):
    x = rng.standard_normal((b, h, w, cin)).astype(np.float32)
    wt = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(dtype)
    raw = np.ascontiguousarray(wt.transpose(0, 2, 3, 1).reshape(cout, k * k * cin)).view(np.uint8)
    bias = rng.standard_normal(cout).astype(np.float32)
    return x, wt.astype(np.float32), raw, bias


@pytest.mark.parametrize("b,h,w,cin,cout,k,stride,pad,up,dtype", [
    (1, 7, 5, 3, 5, 3, 1, (1, 1, 1, 1), 1, np.float32),
    (2, 9, 6, 13, 21, 3, 2, (0, 1, 0, 1), 1, np.float32),     # downsampler: stride 2, asymmetric pad
    (2, 5, 7, 12, 50, 3, 1, (1, 1, 1, 1), 2, np.float32),     # upsampler: nearest x2 folded in
    (2, 6, 5, 19, 11, 1, 1, (0, 0, 0, 0), 1, np.float32),     # 1x1
    (1, 11, 9, 100, 53, 3, 1, (1, 1, 1, 1), 1, np.float16),   # F16 weights, K = 900
    (2, 4, 3, 9, 7, 3, 1, (1, 1, 1, 1), 2, np.float16),
    (2, 24, 23, 16, 20, 3, 1, (1, 1, 1, 1), 1, np.float32),   # enough pixels for threads to split them
], ids=["3x3", "stride2-pad0101", "upsample2", "1x1", "f16-K900", "f16-upsample2", "many-pixels"])
@pytest.mark.parametrize("isa", cpp.isa_names())
def test_conv2d(b, h, w, cin, cout, k, stride, pad, up, dtype, isa):
    rng = np.random.default_rng(cin * 31 + cout)
    x, wt, raw, bias = _conv_case(rng, b, h, w, cin, cout, k, dtype)
    qt = F32 if dtype == np.float32 else F16
    ho = (h * up + pad[0] + pad[1] - k) // stride + 1
    wo = (w * up + pad[2] + pad[3] - k) // stride + 1
    out = np.empty((b, ho, wo, cout), np.float32)
    got = run_threads(functools.partial(cpp.conv2d, isa=isa), out, x, raw, qt, bias, k, k, stride, *pad, up)
    want = np.full_like(out, np.nan)
    R.conv2d_ref(x, raw, qt, bias, k, k, stride, *pad, up, want)
    mag = np.abs(R.patches_ref(x, k, k, stride, pad, up)).reshape(-1, k * k * cin) @ np.abs(wt.transpose(0, 2, 3, 1).reshape(cout, -1)).T
    tol = 2e-6 * mag.reshape(out.shape) + 1e-6
    assert np.all(np.abs(got - want) <= tol), np.abs(got - want).max()
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    if up > 1:
        xt = F.interpolate(xt, scale_factor=up, mode="nearest")
    xt = F.pad(xt, (pad[2], pad[3], pad[0], pad[1]))
    tref = F.conv2d(xt, torch.from_numpy(wt), torch.from_numpy(bias), stride=stride).permute(0, 2, 3, 1).numpy()
    assert np.all(np.abs(got - tref) <= tol)


def test_conv2d_without_bias_and_band_boundaries():
    """K = 4608 keeps a shared band to 14 blocks of 16 pixels: 255 pixels take two bands on one
    thread, and per-thread slices on two (run_threads compares the bits)."""
    rng = np.random.default_rng(5)
    x, wt, raw, _ = _conv_case(rng, 1, 17, 15, 512, 7, 3, np.float32)
    out = np.empty((1, 17, 15, 7), np.float32)
    got = run_threads(cpp.conv2d, out, x, raw, F32, None, 3, 3, 1, 1, 1, 1, 1, 1)
    tref = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(wt), padding=1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, tref, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("isa", cpp.isa_names())
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("b,p,c,groups", [(1, 35, 12, 4), (2, 17, 40, 8), (2, 3, 6, 6)])
def test_group_norm(b, p, c, groups, silu, isa):
    rng = np.random.default_rng(p * c)
    x = (rng.standard_normal((b, p, c)) * 3 + 2).astype(np.float32)
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    out = np.empty_like(x)
    got = run_threads(functools.partial(cpp.group_norm, isa=isa), out, x, groups, gamma, beta, 1e-5, silu)
    want = np.full_like(x, np.nan)
    R.group_norm_ref(x, groups, gamma, beta, 1e-5, silu, want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL)
    t = F.group_norm(torch.from_numpy(x).permute(0, 2, 1), groups, torch.from_numpy(gamma), torch.from_numpy(beta), 1e-5)
    t = (F.silu(t) if silu else t).permute(0, 2, 1).numpy()
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=ATOL)
    inplace = x.copy()
    cpp.group_norm(inplace, groups, gamma, beta, 1e-5, silu, inplace, 2, isa)  # out may alias x
    np.testing.assert_array_equal(inplace, got)


def test_layer_norm():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((13, 37)) + 1).astype(np.float32)
    gamma, beta = rng.standard_normal(37).astype(np.float32), rng.standard_normal(37).astype(np.float32)
    got = run_threads(cpp.layer_norm, np.empty_like(x), x, gamma, beta, 1e-5)
    want = np.full_like(x, np.nan)
    R.layer_norm_ref(x, gamma, beta, 1e-5, want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL)
    t = F.layer_norm(torch.from_numpy(x), (37,), torch.from_numpy(gamma), torch.from_numpy(beta), 1e-5).numpy()
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("b,nq,nk,d,heads,causal,chunk", [
    (2, 37, 37, 24, 3, False, 0),
    (1, 150, 150, 16, 1, False, 7),     # chunk < Nq, more than one internal row block
    (2, 19, 19, 20, 4, True, 5),        # causal (CLIP), chunked
    (2, 33, 7, 40, 8, False, 0),        # cross-attention: Nk != Nq
    (1, 5, 1, 6, 2, False, 2),          # a single key
])
@pytest.mark.parametrize("isa", cpp.isa_names())
def test_attention(b, nq, nk, d, heads, causal, chunk, isa):
    rng = np.random.default_rng(nq * nk + d)
    q, k, v = (rng.standard_normal((b, n, d)).astype(np.float32) for n in (nq, nk, nk))
    got = run_threads(functools.partial(cpp.multihead_attention, isa=isa), np.empty_like(q), q, k, v, heads, causal, chunk)
    want = np.full_like(q, np.nan)
    R.multihead_attention_ref(q, k, v, heads, causal, chunk, want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL)
    dh = d // heads
    qt, kt, vt = (torch.from_numpy(a).view(b, -1, heads, dh).transpose(1, 2) for a in (q, k, v))
    t = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2).reshape(b, nq, d).numpy()
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("nk", [1, 5, 77, 1000])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("isa", cpp.isa_names())
def test_attention_softmax_key_counts(nk, causal, isa):
    """The per-block scores + softmax (portable loops for "scalar", the fused AVX2 kernel for
    "avx2") on key counts around the 6-row score groups and 16-query blocks, causal blocks that
    straddle the diagonal, head dim 16, and peaked scores (large max to subtract)."""
    rng = np.random.default_rng(nk + 7 * causal)
    nq = min(nk, 37) if causal else 21
    b, heads, d = 1, 2, 32
    q = (3.0 * rng.standard_normal((b, nq, d))).astype(np.float32)
    k, v = (rng.standard_normal((b, nk, d)).astype(np.float32) for _ in range(2))
    got = run_threads(functools.partial(cpp.multihead_attention, isa=isa), np.empty_like(q), q, k, v, heads, causal, 0)
    want = np.full_like(q, np.nan)
    R.multihead_attention_ref(q, k, v, heads, causal, 0, want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL)
    scalar = np.full_like(q, np.nan)
    cpp.multihead_attention(q, k, v, heads, causal, 0, scalar, 1, "scalar")
    np.testing.assert_allclose(got, scalar, rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("isa", cpp.isa_names())
def test_geglu_and_silu(isa):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((7, 2 * 45)) * 4).astype(np.float32)
    x[0, 45:50] = [0.0, -12.0, 12.0, -1e-3, 40.0]   # gate tails and zero
    got = run_threads(functools.partial(cpp.geglu, isa=isa), np.empty((7, 45), np.float32), x)
    want = np.full((7, 45), np.nan, np.float32)
    R.geglu_ref(x, want)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    xt = torch.from_numpy(x)
    t = (xt[:, :45] * F.gelu(xt[:, 45:])).numpy()
    np.testing.assert_allclose(got, t, rtol=2e-6, atol=1e-6)

    y = (rng.standard_normal((3, 5, 7)) * 5).astype(np.float32)
    y[0, 0, :3] = [-100.0, 100.0, 0.0]
    got = run_threads(functools.partial(cpp.silu, isa=isa), np.empty_like(y), y)
    want = np.full_like(y, np.nan)
    R.silu_ref(y, want)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(got, F.silu(torch.from_numpy(y)).numpy(), rtol=2e-6, atol=1e-6)
    inplace = y.copy()
    cpp.silu(inplace, inplace, 2, isa)
    np.testing.assert_array_equal(inplace, got)


@pytest.mark.parametrize("with_noise", [False, True])
def test_guided_update(with_noise):
    rng = np.random.default_rng(11)
    x, u, c, n = (rng.standard_normal((2, 4, 5, 3)).astype(np.float32) for _ in range(4))
    noise = n if with_noise else None
    args = (x, u, c, 7.5, 0.9, -0.3, noise, 0.2)
    got = run_threads(cpp.guided_update, np.empty_like(x), *args)
    want = np.full_like(x, np.nan)
    R.guided_update_ref(*args, want)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    xt, ut, ct = torch.from_numpy(x), torch.from_numpy(u), torch.from_numpy(c)
    t = 0.9 * xt - 0.3 * (ut + 7.5 * (ct - ut)) + (0.2 * torch.from_numpy(n) if with_noise else 0)
    np.testing.assert_allclose(got, t.numpy(), rtol=1e-5, atol=1e-5)
    inplace = x.copy()
    cpp.guided_update(inplace, u, c, 7.5, 0.9, -0.3, noise, 0.2, inplace, 1)  # out may alias x
    np.testing.assert_array_equal(inplace, got)


def _f(*shape):
    return np.zeros(shape, np.float32)


W33 = np.zeros((4, 3 * 3 * 5 * 4), np.uint8)  # 4 output channels, K = 45, F32


@pytest.mark.parametrize("call,name", [
    (lambda: cpp.conv2d(_f(1, 4, 4, 5).astype(np.float64), W33, F32, None, 3, 3, 1, 1, 1, 1, 1, 1, _f(1, 4, 4, 4)), "x"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 6), W33, F32, None, 3, 3, 1, 1, 1, 1, 1, 1, _f(1, 4, 4, 4)), "w.shape[1]"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 5), W33, 8, None, 3, 3, 1, 1, 1, 1, 1, 1, _f(1, 4, 4, 4)), "qtype"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 5), W33, F32, _f(3), 3, 3, 1, 1, 1, 1, 1, 1, _f(1, 4, 4, 4)), "bias"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 5), W33, F32, None, 3, 3, 1, 1, 1, 1, 1, 3, _f(1, 4, 4, 4)), "upsample"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 5), W33, F32, None, 3, 3, 0, 1, 1, 1, 1, 1, _f(1, 4, 4, 4)), "stride"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 5), W33, F32, None, 3, 3, 1, 1, 1, 1, 1, 1, _f(1, 4, 3, 4)), "out"),
    (lambda: cpp.conv2d(_f(1, 4, 4, 5), W33, F32, None, 3, 3, 1, 1, 1, 1, 1, 1, _f(1, 4, 4, 4)[:, :, :, :4:2]), "out"),
    (lambda: cpp.group_norm(_f(1, 4, 6), 4, _f(6), _f(6), 1e-5, False, _f(1, 4, 6)), "groups"),
    (lambda: cpp.group_norm(_f(1, 4, 6), 3, _f(5), _f(6), 1e-5, False, _f(1, 4, 6)), "gamma"),
    (lambda: cpp.group_norm(_f(4, 6), 3, _f(6), _f(6), 1e-5, False, _f(4, 6)), "x"),
    (lambda: cpp.layer_norm(_f(3, 6), _f(6), _f(6), -1.0, _f(3, 6)), "eps"),
    (lambda: cpp.layer_norm(_f(3, 6), _f(6), _f(7), 1e-5, _f(3, 6)), "beta"),
    (lambda: cpp.multihead_attention(_f(1, 3, 6), _f(1, 4, 6), _f(1, 4, 6), 4, False, 0, _f(1, 3, 6)), "heads"),
    (lambda: cpp.multihead_attention(_f(1, 3, 6), _f(1, 0, 6), _f(1, 0, 6), 2, False, 0, _f(1, 3, 6)), "Nk"),
    (lambda: cpp.multihead_attention(_f(1, 3, 6), _f(1, 4, 6), _f(1, 5, 6), 2, False, 0, _f(1, 3, 6)), "v"),
    (lambda: cpp.multihead_attention(_f(1, 3, 6), _f(2, 4, 6), _f(2, 4, 6), 2, False, 0, _f(1, 3, 6)), "k"),
    (lambda: cpp.multihead_attention(_f(1, 3, 6), _f(1, 4, 6), _f(1, 4, 6), 2, False, -1, _f(1, 3, 6)), "chunk"),
    (lambda: cpp.geglu(_f(3, 7), _f(3, 3)), "x"),
    (lambda: cpp.geglu(_f(3, 8), _f(3, 3)), "out"),
    (lambda: cpp.silu(_f(3, 8), _f(3, 7)), "out"),
    (lambda: cpp.silu(_f(3, 8), _f(3, 8), 0), "threads"),
    (lambda: cpp.silu(_f(3, 8), _f(3, 8), 1, "sse9"), "isa"),
    (lambda: cpp.guided_update(_f(4), _f(4), _f(5), 7.5, 1.0, 1.0, None, 0.0, _f(4)), "cond"),
    (lambda: cpp.guided_update(_f(4), _f(4), _f(4), 7.5, 1.0, 1.0, _f(3), 0.0, _f(4)), "noise"),
    (lambda: cpp.guided_update(_f(4), _f(4), _f(4), float("nan"), 1.0, 1.0, None, 0.0, _f(4)), "scale"),
    (lambda: cpp.guided_update(_f(4), _f(4), _f(4), 7.5, 1.0, 1.0, None, 0.0, np.zeros(4, np.float64)), "out"),
])
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        call()


def test_outputs_must_not_overlap_inputs():
    x = _f(2, 3, 3, 4)
    w = np.zeros((4, 4), np.float32).view(np.uint8)
    with pytest.raises(ValueError, match="out must not overlap x"):
        cpp.conv2d(x, w, F32, None, 1, 1, 1, 0, 0, 0, 0, 1, x, 1)
    q = _f(1, 4, 6)
    with pytest.raises(ValueError, match="out must not overlap q"):
        cpp.multihead_attention(q, q, q, 2, False, 0, q, 1)


def test_ops_cpp_matches_ref():
    """edgegen.diffusion.ops.Ops: the C++ path (threads 2, attention_chunk) equals the reference path."""
    from edgegen.diffusion.ops import Conv, Ops, Weight
    rng = np.random.default_rng(13)
    cpp_ops, ref_ops = Ops("cpp", threads=2, attention_chunk=5), Ops("ref", attention_chunk=5)
    x = rng.standard_normal((2, 5, 7, 12)).astype(np.float32)
    conv = Conv.from_torch(rng.standard_normal((10, 12, 3, 3)).astype(np.float32) / 6, rng.standard_normal(10), 2,
                           (0, 1, 0, 1), dtype="f16")
    up = Conv.from_torch(rng.standard_normal((9, 12, 3, 3)).astype(np.float32) / 6, None, 1, 1)
    lin = Weight.from_array(rng.standard_normal((11, 12)).astype(np.float32))
    g, b = rng.standard_normal(12).astype(np.float32), rng.standard_normal(12).astype(np.float32)
    q, k = rng.standard_normal((2, 13, 12)).astype(np.float32), rng.standard_normal((2, 6, 12)).astype(np.float32)
    pairs = [
        lambda o: o.conv2d(x, conv), lambda o: o.conv2d(x, up, upsample=2), lambda o: o.linear(x, lin, g[:11]),
        lambda o: o.group_norm(x, 4, g, b, 1e-6, silu=True), lambda o: o.layer_norm(q, g, b, 1e-5),
        lambda o: o.silu(x), lambda o: o.geglu(x), lambda o: o.attention(q, k, k, 3),
        lambda o: o.attention(q, q, q, 2, causal=True),
        lambda o: o.guided_update(x, x * 2, x * 3, 7.5, 0.5, 0.25, noise=x, cnoise=0.1),
    ]
    for i, fn in enumerate(pairs):
        got, want = fn(cpp_ops), fn(ref_ops)
        assert got.shape == want.shape and got.dtype == np.float32, i
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5, err_msg=f"case {i}")
