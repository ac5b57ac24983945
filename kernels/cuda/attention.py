"""Attention of one new token over the KV cache, split over the context (flash-decoding).

Spec: ``edgegen.kernels.ref.attention_ref`` with T = 1. q (Hq, Dh); k_cache, v_cache (Hkv, C, Dh)
float32; the token sees cache rows 0 .. n-1; query head h reads KV head h // (Hq // Hkv) (GQA).

1. ``_partial`` (grid: splits x Hq, block: ``threads``): split s covers rows s*chunk .. and writes
   its max score m, its sum of exp(score - m) l and its unnormalised output acc (Dh,).
   Scores: one thread per key row; the weighted sum of V: one thread per dimension (coalesced).
2. ``_combine`` (grid: Hq, block: ``threads``): out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from numba import cuda, float32


@dataclass(frozen=True)
class AttentionLaunch:
    chunk: int = 256      # context rows per split (scores kept in shared memory)
    threads: int = 128    # threads per block (a power of two)
    max_head_dim: int = 256


GPU_LAUNCH = AttentionLaunch()


@cuda.jit(device=True)
def _block_reduce(buf, tid, nt, is_max):
    """Max or sum of buf[0:nt] into buf[0]; every thread of the block calls it."""
    s = nt // 2
    while s > 0:
        if tid < s:
            buf[tid] = max(buf[tid], buf[tid + s]) if is_max else buf[tid] + buf[tid + s]
        cuda.syncthreads()
        s //= 2


@functools.lru_cache(maxsize=None)
def _kernels(chunk: int, nt: int, max_dh: int):
    @cuda.jit
    def partial(q, k_cache, v_cache, n, scale, group, part_m, part_l, part_acc):
        s, h = cuda.blockIdx.x, cuda.blockIdx.y
        tid = cuda.threadIdx.x
        kvh = h // group
        dh = q.shape[1]
        qs = cuda.shared.array(max_dh, float32)
        sc = cuda.shared.array(chunk, float32)
        red = cuda.shared.array(nt, float32)
        start = s * chunk
        rows = min(chunk, n - start)
        for d in range(tid, dh, nt):
            qs[d] = q[h, d]
        cuda.syncthreads()
        # scores of this split's keys, and their max
        m = float32(-math.inf)
        for j in range(tid, rows, nt):
            acc = float32(0)
            for d in range(dh):
                acc += qs[d] * k_cache[kvh, start + j, d]
            acc *= scale
            sc[j] = acc
            m = max(m, acc)
        red[tid] = m
        cuda.syncthreads()
        _block_reduce(red, tid, nt, True)
        m = red[0]
        cuda.syncthreads()
        # exp and their sum
        l_sum = float32(0)
        for j in range(tid, rows, nt):
            p = math.exp(sc[j] - m)
            sc[j] = p
            l_sum += p
        red[tid] = l_sum
        cuda.syncthreads()
        _block_reduce(red, tid, nt, False)
        # weighted sum of V, one thread per dimension
        for d in range(tid, dh, nt):
            acc = float32(0)
            for j in range(rows):
                acc += sc[j] * v_cache[kvh, start + j, d]
            part_acc[h, s, d] = acc
        if tid == 0:
            part_m[h, s] = m
            part_l[h, s] = red[0]

    @cuda.jit
    def combine(part_m, part_l, part_acc, n_splits, out):
        h = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        big = float32(-math.inf)
        for s in range(n_splits):
            big = max(big, part_m[h, s])
        total = float32(0)
        for s in range(n_splits):
            total += math.exp(part_m[h, s] - big) * part_l[h, s]
        for d in range(tid, out.shape[1], nt):
            acc = float32(0)
            for s in range(n_splits):
                acc += math.exp(part_m[h, s] - big) * part_acc[h, s, d]
            out[h, d] = acc / total
    return partial, combine


def n_splits(n: int, launch: AttentionLaunch = GPU_LAUNCH) -> int:
    return -(-n // launch.chunk)


def attention(q, k_cache, v_cache, n: int, scale: float, out, scratch, launch: AttentionLaunch = GPU_LAUNCH) -> None:
    """out (Hq, Dh) = softmax(q k^T * scale) v over cache rows 0..n-1. ``scratch`` = (m, l, acc) device
    arrays (Hq, S), (Hq, S), (Hq, S, Dh) with S >= n_splits(n) (``make_scratch``)."""
    hq, dh = q.shape
    hkv = k_cache.shape[0]
    if hq % hkv or dh > launch.max_head_dim or not 0 < n <= k_cache.shape[1]:
        raise ValueError(f"attention: q {q.shape}, cache {k_cache.shape}, n {n} do not fit {launch}")
    splits = n_splits(n, launch)
    part_m, part_l, part_acc = scratch
    if part_m.shape[1] < splits:
        raise ValueError(f"attention: scratch holds {part_m.shape[1]} splits, {splits} needed")
    partial, combine = _kernels(launch.chunk, launch.threads, launch.max_head_dim)
    partial[(splits, hq), launch.threads](q, k_cache, v_cache, n, scale, hq // hkv, part_m, part_l, part_acc)
    combine[hq, launch.threads](part_m, part_l, part_acc, splits, out)


def make_scratch(hq: int, dh: int, capacity: int, launch: AttentionLaunch = GPU_LAUNCH):
    import numpy as np
    s = n_splits(capacity, launch)
    return (cuda.device_array((hq, s), np.float32), cuda.device_array((hq, s), np.float32),
            cuda.device_array((hq, s, dh), np.float32))
