"""NumPy references of the diffusion kernels (``cpp/diffusion.h``, module ``edgegen.kernels._cpp``):
the spec and test oracle of conv2d, group_norm, layer_norm, multihead_attention, geglu, silu and
guided_update, and the ``impl="ref"`` path of ``edgegen.diffusion.ops.Ops``.

Same convention as ``ref.py``: arrays in, caller-allocated ``out`` written, nothing returned;
float32, channels-last (images (B, H, W, C), sequences (B, N, C)); ``threads`` accepted and
ignored. Sums run in float64 and are rounded to float32 once.
"""
from __future__ import annotations

import math

import numpy as np

from edgegen.constants import GGMLType


def _weights(w: np.ndarray, qtype: int, K: int) -> np.ndarray:
    """w uint8 (N, row_bytes) of F32 or F16 -> float64 (N, K)."""
    dtype = {int(GGMLType.F32): np.float32, int(GGMLType.F16): np.float16}[int(qtype)]
    return np.ascontiguousarray(w).view(dtype).reshape(len(w), K).astype(np.float64)


def patches_ref(x: np.ndarray, kh: int, kw: int, stride: int, pad: tuple[int, int, int, int],
                upsample: int = 1) -> np.ndarray:
    """x (B, H, W, C), nearest-upsampled by ``upsample`` and zero-padded by pad (top, bottom, left,
    right) -> patches (B, Ho, Wo, kh * kw * C) in (kh, kw, C) order."""
    if upsample != 1:
        x = x.repeat(upsample, axis=1).repeat(upsample, axis=2)
    b, h, w, c = x.shape
    pt, pb, pl, pr = pad
    ho, wo = (h + pt + pb - kh) // stride + 1, (w + pl + pr - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # B, H', W', C, kh, kw
    win = win[:, :ho * stride:stride, :wo * stride:stride]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(b, ho, wo, kh * kw * c)


def conv2d_ref(x: np.ndarray, w: np.ndarray, qtype: int, bias: np.ndarray | None, kh: int, kw: int, stride: int,
               pad_top: int, pad_bottom: int, pad_left: int, pad_right: int, upsample: int, out: np.ndarray,
               threads: int = 1) -> None:
    """out (B, Ho, Wo, Cout) = patches(upsample(x)) @ W^T + bias; w uint8 (Cout, row_bytes) of F32/F16 holding
    (Cout, kh * kw * Cin) in (kh, kw, Cin) order; bias (Cout,) or None."""
    K = kh * kw * x.shape[-1]
    p = patches_ref(x, kh, kw, stride, (pad_top, pad_bottom, pad_left, pad_right), upsample)
    y = p.reshape(-1, K).astype(np.float64) @ _weights(w, qtype, K).T
    if bias is not None:
        y += bias
    out[...] = y.reshape(out.shape).astype(np.float32)


def group_norm_ref(x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray, eps: float, silu: bool,
                   out: np.ndarray, threads: int = 1) -> None:
    """GroupNorm over x (B, P, C): mean and variance per (batch, group of C / groups channels), then
    * gamma + beta, then SiLU if ``silu``. out may be x."""
    b, c = x.shape[0], x.shape[-1]
    g = x.reshape(b, -1, groups, c // groups).astype(np.float64)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * gamma + beta
    if silu:
        y = y / (1.0 + np.exp(-y))
    out[...] = y.astype(np.float32)


def layer_norm_ref(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, out: np.ndarray,
                   threads: int = 1) -> None:
    """LayerNorm over the last axis of x (..., D). out may be x."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    var = x64.var(axis=-1, keepdims=True)
    out[...] = ((x64 - mean) / np.sqrt(var + eps) * gamma + beta).astype(np.float32)


def multihead_attention_ref(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, causal: bool, chunk: int,
                            out: np.ndarray, threads: int = 1) -> None:
    """softmax(q k^T / sqrt(Dh)) v per (batch, head); q (B, Nq, H*Dh), k and v (B, Nk, H*Dh), out (B, Nq, H*Dh).
    Scores are formed for ``chunk`` query rows at a time (0: all); causal: query i sees keys 0..i."""
    b, nq, d = q.shape
    nk, dh = k.shape[1], d // heads
    qh = q.reshape(b, nq, heads, dh).transpose(0, 2, 1, 3).astype(np.float64)
    kh = k.reshape(b, nk, heads, dh).transpose(0, 2, 3, 1).astype(np.float64)
    vh = v.reshape(b, nk, heads, dh).transpose(0, 2, 1, 3).astype(np.float64)
    step = chunk or nq
    for s in range(0, nq, step):
        e = min(nq, s + step)
        scores = (qh[:, :, s:e] @ kh) / math.sqrt(dh)
        if causal:
            scores = np.where(np.arange(nk)[None, :] <= np.arange(s, e)[:, None], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        out[:, s:e] = (p @ vh).transpose(0, 2, 1, 3).reshape(b, e - s, d).astype(np.float32)


def gelu_ref(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU as torch.nn.functional.gelu: exact (erf) or the tanh approximation; returns float32."""
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        return (0.5 * x64 * (1 + np.tanh(0.7978845608028654 * (x64 + 0.044715 * x64 ** 3)))).astype(np.float32)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x64 * (1 + erf(x64 / math.sqrt(2.0)))).astype(np.float32)


def geglu_ref(x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out (..., F) = x[..., :F] * gelu_erf(x[..., F:]) for x (..., 2F) (diffusers' GEGLU after its projection)."""
    f = x.shape[-1] // 2
    erf = np.vectorize(math.erf, otypes=[np.float64])
    g = x[..., f:].astype(np.float64)
    out[...] = (x[..., :f] * (0.5 * g * (1 + erf(g / math.sqrt(2.0))))).astype(np.float32)


def silu_ref(x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out = x * sigmoid(x). out may be x."""
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        out[...] = (x64 / (1.0 + np.exp(-x64))).astype(np.float32)


def guided_update_ref(x: np.ndarray, uncond: np.ndarray, cond: np.ndarray, scale: float, cx: float, cout: float,
                      noise: np.ndarray | None, cnoise: float, out: np.ndarray, threads: int = 1) -> None:
    """out = cx * x + cout * (uncond + scale * (cond - uncond)) + cnoise * noise (classifier-free guidance and
    a linear scheduler step in one pass); noise may be None. out may be x."""
    u = uncond.astype(np.float64)
    y = cx * x.astype(np.float64) + cout * (u + scale * (cond.astype(np.float64) - u))
    if noise is not None:
        y += cnoise * noise.astype(np.float64)
    out[...] = y.astype(np.float32)
