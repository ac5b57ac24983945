"""NumPy references: the spec and test oracle of every kernel in ``cpp/`` and ``numba_cpu.py``.

All kernels share one calling convention: arrays in, caller-allocated ``out`` written,
nothing returned. Activations are float32 C-contiguous. A weight matrix is its raw GGUF
bytes, ``w`` uint8 ``(N, row_bytes)``, with its ``qtype`` and its column count ``K``.
``threads`` is accepted everywhere and ignored here.
"""
from __future__ import annotations

import numpy as np

from edgegen.constants import GGMLType, RopeStyle
from edgegen.kernels.quants import dequantize


def matmul_ref(w: np.ndarray, qtype: GGMLType, K: int, x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out[t, n] = sum_k W[n, k] * x[t, k] with W = dequantize(w); x (T, K), out (T, N)."""
    W = dequantize(w, qtype, K).astype(np.float64)
    out[...] = (x.astype(np.float64) @ W.T).astype(np.float32)


# Block formats whose compiled dot path takes activations rounded to 8 bits, and the block
# length of that rounding (cpp/act_quant.h: 32 for the 32-value formats, 256 for K-quants).
ACT_Q8_BLOCK = {GGMLType.Q8_0: 32, GGMLType.Q4_0: 32, GGMLType.Q4_1: 32,
                GGMLType.Q4_K: 256, GGMLType.Q6_K: 256}


def quantize_act_ref(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """x (T, K) float32 -> (q int8 (T, K), d float32 (T, K/block)) with x ~= d * q per block.

    q = round_half_even(x * (127 / max|x|)) in float32, d = max|x| / 127, rounded to float16
    for 32-value blocks (ggml stores block_q8_0's d as f16; Q8_K keeps float32); a block of
    zeros gets d = 0. The C++ kernels (cpp/act_quant.cpp) round identically.
    """
    T, K = x.shape
    xb = x.reshape(T, K // block, block).astype(np.float32)
    amax = np.abs(xb).max(axis=-1, keepdims=True)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.rint(np.clip(xb * inv, -127, 127)).astype(np.int8).reshape(T, K)
    d = (amax / np.float32(127))[..., 0]
    if block == 32:
        d = d.astype(np.float16).astype(np.float32)
    return q, d


def matmul_act_q8_ref(w: np.ndarray, qtype: GGMLType, K: int, x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """What the compiled dot path computes: matmul_ref with x first rounded to 8 bits per block
    (quantize_act_ref) for the formats in ACT_Q8_BLOCK; every other format is matmul_ref."""
    block = ACT_Q8_BLOCK.get(GGMLType(qtype))
    if block is not None:
        q, d = quantize_act_ref(x, block)
        x = (q.reshape(len(x), -1, block).astype(np.float64) * d[..., None]).reshape(x.shape)
    matmul_ref(w, qtype, K, x, out)


def get_rows_ref(w: np.ndarray, qtype: GGMLType, K: int, ids: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out[t] = dequantize(w[ids[t]]): embedding lookup; ids int32 (T,), out (T, K)."""
    out[...] = dequantize(w[ids], qtype, K)


def rmsnorm_ref(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray, threads: int = 1) -> None:
    """out = x / sqrt(mean(x^2) + eps) * weight, per row of x (T, D); weight (D,)."""
    x64 = x.astype(np.float64)
    inv = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps)
    out[...] = (x64 * inv * weight).astype(np.float32)


def rope_ref(x: np.ndarray, positions: np.ndarray, n_rot: int, theta: float, style: RopeStyle, threads: int = 1) -> None:
    """Rotate x (T, H, Dh) in place by position; the first ``n_rot`` dims of each head rotate.

    Pair i (0 <= i < n_rot/2) turns by angle pos * theta**(-2i/n_rot). NORMAL pairs dims
    (2i, 2i+1); NEOX pairs dims (i, i + n_rot/2).
    """
    half = n_rot // 2
    freqs = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)
    ang = positions.astype(np.float64)[:, None] * freqs[None, :]          # (T, half)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]           # (T, 1, half)
    x64 = x.astype(np.float64)
    if style == RopeStyle.NORMAL:
        a, b = x64[..., 0:n_rot:2], x64[..., 1:n_rot:2]
        x[..., 0:n_rot:2] = a * cos - b * sin
        x[..., 1:n_rot:2] = a * sin + b * cos
    else:
        a, b = x64[..., :half], x64[..., half:n_rot]
        x[..., :half] = a * cos - b * sin
        x[..., half:n_rot] = a * sin + b * cos


def attention_ref(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int, scale: float,
                  out: np.ndarray, threads: int = 1) -> None:
    """Causal attention of T new queries over a KV cache, grouped-query.

    q (T, Hq, Dh); k_cache, v_cache (Hkv, C, Dh) with Hq % Hkv == 0; out (T, Hq, Dh).
    Query t sits at position pos0 + t and sees cache rows 0 .. pos0 + t inclusive;
    query head h reads KV head h // (Hq // Hkv).
    """
    T, Hq, _ = q.shape
    group = Hq // k_cache.shape[0]
    for t in range(T):
        n = pos0 + t + 1
        for h in range(Hq):
            k = k_cache[h // group, :n].astype(np.float64)
            v = v_cache[h // group, :n].astype(np.float64)
            s = (k @ q[t, h].astype(np.float64)) * scale
            p = np.exp(s - s.max())
            out[t, h] = (p @ v / p.sum()).astype(np.float32)


def swiglu_ref(gate: np.ndarray, up: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out = silu(gate) * up, elementwise over (T, F)."""
    g = gate.astype(np.float64)
    out[...] = (g / (1.0 + np.exp(-g)) * up).astype(np.float32)
