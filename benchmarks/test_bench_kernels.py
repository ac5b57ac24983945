"""pytest-benchmark suites for the kernels, each beside its peer in the same run, each checked after timing.

    pytest benchmarks/test_bench_kernels.py --benchmark-only [--benchmark-group-by=group]

- matvec: one activation row times a weight matrix per GGUF type (F16, Q8_0, Q4_0, Q4_1, Q4_K,
  Q6_K), ``_cpp.matmul`` (the decode path: 8-bit activations for block formats) against NumPy's
  float32 ``W @ x`` on the dequantized matrix. ``extra_info`` carries the weight bytes read and GB/s.
  Checked: within kernel_data.MATMUL_RTOL of the NumPy reference (tests/kernel_data.py).
- attention: one decode query (9 heads, 3 KV heads, head size 64: SmolLM's) over a cache of 128
  to 4096 positions, ``_cpp.attention`` against a vectorised NumPy softmax (the peer) and, when
  torch is installed, ``scaled_dot_product_attention``. Checked against kernels/ref.attention_ref.
- denoise step: ``_cpp.guided_update`` (classifier-free guidance and a linear scheduler step in
  one pass) on SD latents against the same formula in NumPy. Checked against
  kernels/diffusion_ref.guided_update_ref.
Each case warms up first (one round); compare within a group: absolute times drift on a shared machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kernel_data import MATMUL_RTOL, assert_matmul_close, make_weights  # noqa: E402

from edgegen.constants import GGMLType  # noqa: E402
from edgegen.kernels import _cpp  # noqa: E402
from edgegen.kernels.diffusion_ref import guided_update_ref  # noqa: E402
from edgegen.kernels.quants import dequantize  # noqa: E402
from edgegen.kernels.ref import attention_ref  # noqa: E402

GB = 1e9
ROUNDS = 20
THREADS = 1
MATVEC_TYPES = ("F16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")
N, K = 2048, 2048                 # a TinyLlama-sized projection (4 to 8 MB quantized: L3-resident here)
CONTEXTS = (128, 512, 1024, 2048, 4096)
HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64
ATTN_RTOL, ATTN_ATOL = 1e-4, 1e-5       # float32 softmax and sums in a different order
LATENTS = (2, 4, 64, 64)          # a batch of two SD 1.5 latents (512x512 images)
GUIDANCE, CX, COUT, CNOISE = 7.5, 0.98, -0.11, 0.05


def _record_bytes(benchmark, nbytes: int) -> None:
    """Bytes one call reads and (when timed: not under --benchmark-disable) GB/s."""
    stats = benchmark.stats
    benchmark.extra_info.update(bytes=nbytes, gbps=nbytes / stats.stats.mean / GB if stats else None)


def _timed(benchmark, fn, group: str):
    benchmark.group = group
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1)


# ---- matrix-vector per quant type -------------------------------------------------------------------
@pytest.fixture(scope="module")
def matvec_case():
    made = {}

    def get(name: str):
        if name not in made:
            qtype = GGMLType[name]
            rng = np.random.default_rng(0)
            w = make_weights(qtype, N, K, rng)
            made[name] = (qtype, w, dequantize(w, qtype, K).astype(np.float32),
                          rng.standard_normal((1, K)).astype(np.float32))
        return made[name]
    return get


@pytest.mark.parametrize("impl", ["edgegen", "numpy"])
@pytest.mark.parametrize("qtype_name", MATVEC_TYPES)
def test_matvec(benchmark, matvec_case, qtype_name, impl):
    qtype, w, dense, x = matvec_case(qtype_name)
    out = np.empty((1, N), np.float32)
    if impl == "edgegen":
        _timed(benchmark, lambda: _cpp.matmul(w, int(qtype), K, x, out, THREADS), f"matvec {qtype_name}")
        assert_matmul_close(w, qtype, K, x, out, f"{qtype_name} matvec", int8_act=qtype != GGMLType.F16)
        nbytes = w.nbytes
    else:
        out = _timed(benchmark, lambda: dense @ x[0], f"matvec {qtype_name}")[None]
        want = x.astype(np.float64) @ dense.astype(np.float64).T
        bound = MATMUL_RTOL * (np.abs(x.astype(np.float64)) @ np.abs(dense.astype(np.float64)).T)
        assert (np.abs(out - want) <= bound).all()
        nbytes = dense.nbytes
    _record_bytes(benchmark, nbytes)


# ---- decode attention over a filled cache --------------------------------------------------------------
def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, n: int, scale: float) -> np.ndarray:
    """One query per head (1, Hq, Dh) over the first n cache rows: softmax(q k^T * scale) v, grouped."""
    group = q.shape[1] // k.shape[0]
    qh = q[0].reshape(k.shape[0], group, -1)                         # (Hkv, group, Dh)
    s = np.einsum("hgd,hnd->hgn", qh, k[:, :n]) * np.float32(scale)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hgn,hnd->hgd", p, v[:, :n]).reshape(1, -1, q.shape[2])


@pytest.mark.parametrize("impl", ["edgegen", "numpy", "torch"])
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_attention(benchmark, ctx, impl):
    rng = np.random.default_rng(ctx)
    q = rng.standard_normal((1, HEADS, HEAD_DIM)).astype(np.float32)
    k, v = (rng.standard_normal((KV_HEADS, ctx, HEAD_DIM)).astype(np.float32) for _ in range(2))
    scale = HEAD_DIM ** -0.5
    out = np.empty_like(q)
    group = f"attention ctx {ctx}"
    if impl == "edgegen":
        _timed(benchmark, lambda: _cpp.attention(q, k, v, ctx - 1, scale, out, THREADS), group)
    elif impl == "numpy":
        out = _timed(benchmark, lambda: numpy_attention(q, k, v, ctx, scale), group)
    else:
        torch = pytest.importorskip("torch", reason="the torch peer needs torch: pip install 'edgegen[test]'")
        torch.set_num_threads(THREADS)
        qt = torch.from_numpy(q).permute(1, 0, 2)[None]                  # (1, Hq, 1, Dh)
        kt, vt = (torch.from_numpy(a).repeat_interleave(HEADS // KV_HEADS, dim=0)[None] for a in (k, v))
        with torch.inference_mode():
            res = _timed(benchmark, lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt), group)
        out = res[0].permute(1, 0, 2).numpy()
    want = np.empty_like(q)
    attention_ref(q, k, v, ctx - 1, scale, want)
    np.testing.assert_allclose(out, want, rtol=ATTN_RTOL, atol=ATTN_ATOL)
    _record_bytes(benchmark, k.nbytes + v.nbytes)


# ---- the fused denoise step ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["edgegen", "numpy"])
def test_guided_update(benchmark, impl):
    rng = np.random.default_rng(0)
    x, uncond, cond, noise = (rng.standard_normal(LATENTS).astype(np.float32) for _ in range(4))
    out = np.empty_like(x)
    if impl == "edgegen":
        _timed(benchmark, lambda: _cpp.guided_update(x, uncond, cond, GUIDANCE, CX, COUT, noise, CNOISE, out, THREADS),
               "guided update")
    else:
        def step():
            return (np.float32(CX) * x + np.float32(COUT) * (uncond + np.float32(GUIDANCE) * (cond - uncond))
                    + np.float32(CNOISE) * noise)
        out = _timed(benchmark, step, "guided update")
    want = np.empty_like(x)
    guided_update_ref(x, uncond, cond, GUIDANCE, CX, COUT, noise, CNOISE, want)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    _record_bytes(benchmark, 5 * x.nbytes)          # reads x, uncond, cond, noise; writes out
