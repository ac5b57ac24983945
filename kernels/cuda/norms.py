"""RMSNorm, RoPE, SwiGLU, the KV-cache write and greedy argmax for one token, on the device.

Specs (``edgegen.kernels.ref``): ``rmsnorm_ref``, ``rope_ref`` (NORMAL pairs dims (2i, 2i+1),
NEOX pairs (i, i + n_rot/2); pair i turns by pos * theta**(-2i/n_rot)), ``swiglu_ref``; argmax
returns the first index of the largest value (``np.argmax``).
"""
from __future__ import annotations

import math

from numba import cuda, float32, int32

THREADS = 128   # block size of the reducing kernels (a power of two)


@cuda.jit
def _rmsnorm(x, weight, eps, out):
    nt = cuda.blockDim.x
    tid = cuda.threadIdx.x
    red = cuda.shared.array(1024, float32)
    acc = float32(0)
    for i in range(tid, x.shape[0], nt):
        acc += x[i] * x[i]
    red[tid] = acc
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            red[tid] += red[tid + s]
        cuda.syncthreads()
        s //= 2
    inv = float32(1) / math.sqrt(red[0] / float32(x.shape[0]) + eps)
    for i in range(tid, x.shape[0], nt):
        out[i] = x[i] * inv * weight[i]


def rmsnorm(x, weight, eps: float, out, threads: int = THREADS) -> None:
    """out (D,) = x / sqrt(mean(x^2) + eps) * weight; one block."""
    _rmsnorm[1, threads](x, weight, eps, out)


@cuda.jit
def _rope(x, pos, n_rot, theta, neox):
    """x (H, Dh) rotated in place; one thread per (head, pair)."""
    i = cuda.grid(1)
    half = n_rot // 2
    if i < x.shape[0] * half:
        h, p = i // half, i % half
        ang = float32(pos) * theta ** (float32(-2 * p) / float32(n_rot))
        c, s = math.cos(ang), math.sin(ang)
        a_i, b_i = (p, p + half) if neox else (2 * p, 2 * p + 1)
        a, b = x[h, a_i], x[h, b_i]
        x[h, a_i] = a * c - b * s
        x[h, b_i] = a * s + b * c


def rope(x, pos: int, n_rot: int, theta: float, neox: bool, threads: int = THREADS) -> None:
    n = x.shape[0] * (n_rot // 2)
    _rope[-(-n // threads), threads](x, pos, n_rot, theta, neox)


@cuda.jit
def _swiglu(gate, up, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        g = gate[i]
        out[i] = g / (float32(1) + math.exp(-g)) * up[i]


def swiglu(gate, up, out, threads: int = THREADS) -> None:
    """out = silu(gate) * up; out may be gate."""
    _swiglu[-(-out.shape[0] // threads), threads](gate, up, out)


@cuda.jit
def _store_kv(k, v, pos, k_cache, v_cache):
    """k, v (Hkv, Dh) -> cache rows [:, pos]."""
    i = cuda.grid(1)
    if i < k.size:
        h, d = i // k.shape[1], i % k.shape[1]
        k_cache[h, pos, d] = k[h, d]
        v_cache[h, pos, d] = v[h, d]


def store_kv(k, v, pos: int, k_cache, v_cache, threads: int = THREADS) -> None:
    _store_kv[-(-k.size // threads), threads](k, v, pos, k_cache, v_cache)


@cuda.jit
def _argmax(x, out):
    nt = cuda.blockDim.x
    tid = cuda.threadIdx.x
    best_v = cuda.shared.array(1024, float32)
    best_i = cuda.shared.array(1024, int32)
    bv, bi = float32(-math.inf), int32(x.shape[0])
    for i in range(tid, x.shape[0], nt):          # each thread sees increasing i: keep the first max
        if x[i] > bv:
            bv, bi = x[i], int32(i)
    best_v[tid], best_i[tid] = bv, bi
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            ov, oi = best_v[tid + s], best_i[tid + s]
            if ov > best_v[tid] or (ov == best_v[tid] and oi < best_i[tid]):
                best_v[tid], best_i[tid] = ov, oi
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        out[0] = best_i[0]


def argmax(x, out, threads: int = THREADS) -> None:
    """out[0] (int32 device array) = the first index of max(x)."""
    _argmax[1, threads](x, out)
