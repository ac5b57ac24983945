"""Dequantizing matrix-vector products on the raw GGUF blocks, and the embedding row lookup.

    out[n] = sum_k W[n, k] * x[k]  (+ bias[n])  (+ out[n] when accumulating: the residual add)

Spec: ``edgegen.kernels.ref.matmul_ref`` with one row of x (float32 activations, weights decoded
as ``kernels/quants.py``), and ``get_rows_ref`` for ``get_rows``.

Design (bandwidth: every weight byte is read once per token). A block of ``lanes * rows`` threads
owns ``rows`` output rows, ``lanes`` threads (a warp on a GPU) per row. The activations are staged
in shared memory ``tile`` values at a time. Inside a row, lane i takes work units i, i + lanes, ...
where a unit is 4 consecutive quant bytes of one block (Q8_0: 4 values; Q4_0 / Q4_1 / Q4_K: 4 low
and 4 high nibbles), so neighbouring lanes read neighbouring bytes (coalesced) and the block scale
is a broadcast. Partial sums meet in shared memory (a tree over the lanes; the simulator has no
warp shuffles, so one code path serves both). F32, F16 and Q6_K run one value per lane step
through the element decoder (simpler, correct; Q6_K is slower than it could be).

Weights live on the device as one flat uint8 array per tensor (``w8``) with a float16 view of the
same bytes (``w16``: block scales sit at even offsets) and, for F32, a float32 view.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32, int32

from edgegen.constants import GGMLType, block_geometry
from edgegen.errors import UnsupportedModelError


@dataclass(frozen=True)
class MatvecLaunch:
    lanes: int = 32      # threads per output row (a power of two; a warp on a GPU)
    rows: int = 4        # output rows per block
    tile: int = 2048     # activations staged in shared memory per pass (a multiple of 256)

    def __post_init__(self):
        if self.lanes & (self.lanes - 1) or self.tile % 256 or self.rows < 1:
            raise ValueError(f"MatvecLaunch: lanes must be a power of two and tile a multiple of 256, found {self}")


GPU_LAUNCH = MatvecLaunch()


# ---- element decoders: value k of the row whose bytes start at byte ``base`` -------------------
@cuda.jit(device=True, inline=True)
def _i8(b):
    return (int32(b) ^ 128) - 128


@cuda.jit(device=True, inline=True)
def _q4k_scale_min(w8, sb, j):
    """Six-bit scale and min of sub-block j (0..7) of the Q4_K superblock at byte sb."""
    if j < 4:
        return int32(w8[sb + 4 + j]) & 63, int32(w8[sb + 8 + j]) & 63
    a, lo, hi = int32(w8[sb + 8 + j]), int32(w8[sb + j]), int32(w8[sb + 4 + j])
    return (a & 15) | ((lo >> 6) << 4), (a >> 4) | ((hi >> 6) << 4)


@cuda.jit(device=True)
def element(qtype, w8, w16, w32, base, k):
    """Value k of one row (bytes from ``base``) of a ``qtype`` tensor, as float32."""
    if qtype == 0:                                   # F32
        return w32[(base >> 2) + k]
    if qtype == 1:                                   # F16
        return float32(w16[(base >> 1) + k])
    if qtype == 8:                                   # Q8_0
        b = base + (k >> 5) * 34
        return float32(w16[b >> 1]) * float32(_i8(w8[b + 2 + (k & 31)]))
    if qtype == 2 or qtype == 3:                     # Q4_0, Q4_1
        j = k & 31
        b = base + (k >> 5) * (18 if qtype == 2 else 20)
        byte = int32(w8[b + (2 if qtype == 2 else 4) + (j & 15)])
        nib = float32((byte & 15) if j < 16 else (byte >> 4))
        if qtype == 2:
            return float32(w16[b >> 1]) * (nib - float32(8))
        return float32(w16[b >> 1]) * nib + float32(w16[(b >> 1) + 1])
    if qtype == 12:                                  # Q4_K
        sb = base + (k >> 8) * 144
        j = k & 255
        chunk, within = j >> 6, j & 63
        sc, mn = _q4k_scale_min(w8, sb, chunk * 2 + (within >> 5))
        byte = int32(w8[sb + 16 + chunk * 32 + (within & 31)])
        nib = float32((byte & 15) if within < 32 else (byte >> 4))
        return float32(w16[sb >> 1]) * float32(sc) * nib - float32(w16[(sb >> 1) + 1]) * float32(mn)
    # Q6_K
    sb = base + (k >> 8) * 210
    j = k & 255
    h, g, l = j >> 7, (j >> 5) & 3, j & 31
    byte = int32(w8[sb + h * 64 + (g & 1) * 32 + l])
    low = (byte & 15) if g < 2 else (byte >> 4)
    high = (int32(w8[sb + 128 + h * 32 + l]) >> (2 * g)) & 3
    sc = _i8(w8[sb + 192 + h * 8 + g * 2 + (l >> 4)])
    return float32(w16[(sb + 208) >> 1]) * float32(sc) * float32((low | (high << 4)) - 32)


# ---- per-lane dot products over one tile (n values from column k0) ----------------------------
@cuda.jit(device=True)
def _dot_q8_0(w8, w16, base, k0, n, xs, lane, lanes):
    acc = float32(0)
    b0 = base + (k0 >> 5) * 34
    for u in range(lane, n >> 2, lanes):             # 8 units of 4 values per block
        b = b0 + (u >> 3) * 34
        q = b + 2 + (u & 7) * 4
        xi = u * 4
        s = float32(0)
        for i in range(4):
            s += float32(_i8(w8[q + i])) * xs[xi + i]
        acc += float32(w16[b >> 1]) * s
    return acc


@cuda.jit(device=True)
def _dot_q4(w8, w16, base, k0, n, xs, lane, lanes, with_min):
    """Q4_0 (with_min False: x = d (q - 8)) and Q4_1 (x = d q + m)."""
    bb = 20 if with_min else 18
    acc = float32(0)
    b0 = base + (k0 >> 5) * bb
    for u in range(lane, n >> 3, lanes):             # 4 units of 4 bytes (8 values) per block
        b = b0 + (u >> 2) * bb
        q = b + bb - 16 + (u & 3) * 4
        xi = (u >> 2) * 32 + (u & 3) * 4
        s = float32(0)
        sx = float32(0)
        for i in range(4):
            byte = int32(w8[q + i])
            lo, hi = xs[xi + i], xs[xi + 16 + i]
            s += float32(byte & 15) * lo + float32(byte >> 4) * hi
            sx += lo + hi
        d = float32(w16[b >> 1])
        if with_min:
            acc += d * s + float32(w16[(b >> 1) + 1]) * sx
        else:
            acc += d * (s - float32(8) * sx)
    return acc


@cuda.jit(device=True)
def _dot_q4_k(w8, w16, base, k0, n, xs, lane, lanes):
    acc = float32(0)
    s0 = base + (k0 >> 8) * 144
    for u in range(lane, n >> 3, lanes):             # 32 units of 4 bytes (8 values) per superblock
        sb = s0 + (u >> 5) * 144
        c = u & 31
        chunk, off = c >> 3, (c & 7) * 4
        q = sb + 16 + chunk * 32 + off
        xi = (u >> 5) * 256 + chunk * 64 + off
        s_lo = float32(0)
        s_hi = float32(0)
        x_lo = float32(0)
        x_hi = float32(0)
        for i in range(4):
            byte = int32(w8[q + i])
            lo, hi = xs[xi + i], xs[xi + 32 + i]
            s_lo += float32(byte & 15) * lo
            s_hi += float32(byte >> 4) * hi
            x_lo += lo
            x_hi += hi
        sc0, m0 = _q4k_scale_min(w8, sb, chunk * 2)
        sc1, m1 = _q4k_scale_min(w8, sb, chunk * 2 + 1)
        d, dmin = float32(w16[sb >> 1]), float32(w16[(sb >> 1) + 1])
        acc += d * (float32(sc0) * s_lo + float32(sc1) * s_hi) - dmin * (float32(m0) * x_lo + float32(m1) * x_hi)
    return acc


@cuda.jit(device=True)
def _dot_elements(qtype, w8, w16, w32, base, k0, n, xs, lane, lanes):
    acc = float32(0)
    for i in range(lane, n, lanes):
        acc += element(qtype, w8, w16, w32, base, k0 + i) * xs[i]
    return acc


@cuda.jit(device=True)
def _dot(qtype, w8, w16, w32, base, k0, n, xs, lane, lanes):
    if qtype == 8:
        return _dot_q8_0(w8, w16, base, k0, n, xs, lane, lanes)
    if qtype == 2:
        return _dot_q4(w8, w16, base, k0, n, xs, lane, lanes, False)
    if qtype == 3:
        return _dot_q4(w8, w16, base, k0, n, xs, lane, lanes, True)
    if qtype == 12:
        return _dot_q4_k(w8, w16, base, k0, n, xs, lane, lanes)
    return _dot_elements(qtype, w8, w16, w32, base, k0, n, xs, lane, lanes)


SUPPORTED = (GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K, GGMLType.Q6_K)


@functools.lru_cache(maxsize=None)
def matvec_kernel(qtype: int, lanes: int, rows: int, tile: int):
    """The kernel for one (format, launch shape): args (w8, w16, w32, row_bytes, x, K, out, n_rows, bias, flags);
    flags bit 0: add bias[n], bit 1: add the old out[n]."""
    nt = lanes * rows

    @cuda.jit
    def kernel(w8, w16, w32, row_bytes, x, K, out, n_rows, bias, flags):
        xs = cuda.shared.array(tile, float32)
        part = cuda.shared.array(nt, float32)
        tid = cuda.threadIdx.x
        lane = tid % lanes
        row = cuda.blockIdx.x * rows + tid // lanes
        acc = float32(0)
        for k0 in range(0, K, tile):
            n = min(tile, K - k0)
            cuda.syncthreads()                           # the previous tile is consumed
            for i in range(tid, n, nt):
                xs[i] = x[k0 + i]
            cuda.syncthreads()
            if row < n_rows:
                acc += _dot(qtype, w8, w16, w32, row * row_bytes, k0, n, xs, lane, lanes)
        part[tid] = acc
        cuda.syncthreads()
        s = lanes // 2
        while s > 0:                                     # tree over the lanes of each row
            if lane < s:
                part[tid] += part[tid + s]
            cuda.syncthreads()
            s //= 2
        if lane == 0 and row < n_rows:
            v = part[tid]
            if flags & 1:
                v += bias[row]
            if flags & 2:
                v += out[row]
            out[row] = v
    return kernel


@cuda.jit
def _get_rows_kernel(qtype, w8, w16, w32, row_bytes, row, K, out):
    k = cuda.grid(1)
    if k < K:
        out[k] = element(qtype, w8, w16, w32, row * row_bytes, k)


@dataclass(frozen=True)
class DeviceTensor:
    """A weight matrix on the device: its raw GGUF bytes and the typed views the kernels read."""
    w8: object            # uint8 (rows * row_bytes,)
    w16: object           # float16 view of the same bytes
    w32: object           # float32 view (F32 tensors; else a 1-element placeholder)
    qtype: GGMLType
    rows: int
    cols: int
    row_bytes: int

    @classmethod
    def upload(cls, data: np.ndarray, qtype: GGMLType, rows: int, cols: int) -> "DeviceTensor":
        qtype = GGMLType(qtype)
        if qtype not in SUPPORTED:
            raise UnsupportedModelError(f"the CUDA kernels do not run {qtype.name} tensors (they run: "
                             f"{', '.join(t.name for t in SUPPORTED)})")
        values, nbytes = block_geometry(qtype)
        row_bytes = cols // values * nbytes
        w8 = cuda.to_device(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1))
        assert w8.shape[0] == rows * row_bytes, (w8.shape, rows, row_bytes)
        w32 = w8.view(np.float32) if qtype == GGMLType.F32 else cuda.to_device(np.zeros(1, np.float32))
        return cls(w8, w8.view(np.float16), w32, qtype, rows, cols, row_bytes)


def matvec(w: DeviceTensor, x, out, bias=None, accumulate: bool = False, launch: MatvecLaunch = GPU_LAUNCH) -> None:
    """out (N,) = W x (+ bias) (+ out); x (K,) float32 device arrays; N, K from ``w``."""
    if x.shape != (w.cols,) or out.shape[0] < w.rows:
        raise ValueError(f"matvec: x {x.shape} / out {out.shape} do not fit W ({w.rows}, {w.cols})")
    kernel = matvec_kernel(int(w.qtype), launch.lanes, launch.rows, launch.tile)
    flags = (1 if bias is not None else 0) | (2 if accumulate else 0)
    blocks = math.ceil(w.rows / launch.rows)
    kernel[blocks, launch.lanes * launch.rows](w.w8, w.w16, w.w32, w.row_bytes, x, w.cols, out, w.rows,
                                                bias if bias is not None else x, flags)


def get_rows(w: DeviceTensor, row: int, out, threads: int = 128) -> None:
    """out (K,) = dequantize(W[row]): one embedding lookup; ``row`` is a device-side int32 or an int."""
    _get_rows_kernel[math.ceil(w.cols / threads), threads](int(w.qtype), w.w8, w.w16, w.w32, w.row_bytes, row,
                                                          w.cols, out)
