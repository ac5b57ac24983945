"""CUDA attention, RMSNorm, RoPE, SwiGLU, KV store, argmax and the guided diffusion update against the
NumPy references, on awkward shapes, with outputs poisoned (NaN) before each launch."""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.constants import RopeStyle
from edgegen.kernels import diffusion_ref, ref

cuda = pytest.importorskip("numba.cuda")
attn = pytest.importorskip("edgegen.kernels.cuda.attention")
norms = pytest.importorskip("edgegen.kernels.cuda.norms")
guided = pytest.importorskip("edgegen.kernels.cuda.guided")

TOL = dict(rtol=2e-5, atol=2e-6)


def nan_device(shape, dtype=np.float32):
    return cuda.to_device(np.full(shape, np.nan if dtype == np.float32 else -1, dtype))


@pytest.mark.parametrize("hq,hkv,dh,cap,n,chunk", [
    (4, 2, 16, 40, 37, 8),     # 5 splits, the last 5 rows; GQA group 2
    (3, 1, 10, 9, 1, 4),       # one row; Dh not a power of two
    (2, 2, 8, 30, 30, 16),     # full cache, 2 splits
])
def test_attention_matches_reference(hq, hkv, dh, cap, n, chunk):
    rng = np.random.default_rng(n)
    q = rng.standard_normal((hq, dh)).astype(np.float32)
    kc, vc = (rng.standard_normal((hkv, cap, dh)).astype(np.float32) for _ in range(2))
    launch = attn.AttentionLaunch(chunk=chunk, threads=16, max_head_dim=16)
    scratch = attn.make_scratch(hq, dh, cap, launch)
    for a in scratch:
        a.copy_to_device(np.full(a.shape, np.nan, np.float32))
    out = nan_device((hq, dh))
    scale = 1 / np.sqrt(dh)
    attn.attention(cuda.to_device(q), cuda.to_device(kc), cuda.to_device(vc), n, scale, out, scratch, launch)
    want = np.empty((1, hq, dh), np.float32)
    ref.attention_ref(q[None], kc, vc, n - 1, scale, want)
    np.testing.assert_allclose(out.copy_to_host(), want[0], **TOL)


@pytest.mark.parametrize("D,threads", [(37, 16), (64, 32)])
def test_rmsnorm(D, threads):
    rng = np.random.default_rng(D)
    x, w = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    out = nan_device(D)
    norms.rmsnorm(cuda.to_device(x), cuda.to_device(w), 1e-5, out, threads)
    want = np.empty((1, D), np.float32)
    ref.rmsnorm_ref(x[None], w, 1e-5, want)
    np.testing.assert_allclose(out.copy_to_host(), want[0], **TOL)


@pytest.mark.parametrize("style", [RopeStyle.NORMAL, RopeStyle.NEOX])
@pytest.mark.parametrize("H,dh,n_rot,pos", [(3, 16, 16, 5), (2, 12, 8, 123)])
def test_rope(style, H, dh, n_rot, pos):
    rng = np.random.default_rng(pos)
    x = rng.standard_normal((H, dh)).astype(np.float32)
    dev = cuda.to_device(x)
    norms.rope(dev, pos, n_rot, 10000.0, style == RopeStyle.NEOX, threads=8)
    want = x[None].copy()
    ref.rope_ref(want, np.array([pos], np.int32), n_rot, 10000.0, style)
    np.testing.assert_allclose(dev.copy_to_host(), want[0], rtol=1e-4, atol=1e-5)


def test_swiglu_and_store_kv():
    rng = np.random.default_rng(0)
    g, u = rng.standard_normal(45).astype(np.float32), rng.standard_normal(45).astype(np.float32)
    out = nan_device(45)
    norms.swiglu(cuda.to_device(g), cuda.to_device(u), out, threads=16)
    want = np.empty(45, np.float32)
    ref.swiglu_ref(g, u, want)
    np.testing.assert_allclose(out.copy_to_host(), want, **TOL)
    k, v = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    kc, vc = np.zeros((2, 5, 3), np.float32), np.zeros((2, 5, 3), np.float32)
    dk, dv = cuda.to_device(kc), cuda.to_device(vc)
    norms.store_kv(cuda.to_device(k), cuda.to_device(v), 3, dk, dv, threads=4)
    kc[:, 3], vc[:, 3] = k, v
    np.testing.assert_array_equal(dk.copy_to_host(), kc)
    np.testing.assert_array_equal(dv.copy_to_host(), vc)


def test_argmax_takes_the_first_maximum():
    x = np.random.default_rng(1).standard_normal(77).astype(np.float32)
    x[[20, 50]] = 9.0
    out = nan_device(1, np.int32)
    norms.argmax(cuda.to_device(x), out, threads=16)
    assert int(out.copy_to_host()[0]) == int(np.argmax(x)) == 20


@pytest.mark.parametrize("with_noise", [False, True])
def test_guided_update(with_noise):
    rng = np.random.default_rng(7)
    shape = (1, 5, 3, 4)       # 60 values: not a multiple of the block
    x, u, c, nz = (rng.standard_normal(shape).astype(np.float32) for _ in range(4))
    args = (x, u, c, 7.5, 0.9, -0.3, nz if with_noise else None, 0.2)
    want = np.empty(shape, np.float32)
    diffusion_ref.guided_update_ref(*args, want)
    got = guided.guided_update_host(*args)
    np.testing.assert_allclose(got, want, **TOL)
    out = nan_device(x.size)
    guided.guided_update(*(cuda.to_device(a.reshape(-1)) for a in (x, u, c)), 7.5, 0.9, -0.3,
                         cuda.to_device(nz.reshape(-1)) if with_noise else None, 0.2, out, threads=32)
    np.testing.assert_allclose(out.copy_to_host().reshape(shape), want, **TOL)
