"""NumPy ports of ggml's reference k-quant quantizers: Q4_K and Q6_K, bit for bit.

ggml builds GGUF files with ``quantize_row_q4_K_ref`` / ``quantize_row_q6_K_ref`` (what
``llama-quantize`` runs when no importance matrix is given). Those are scalar C loops over
one block at a time; here the same arithmetic runs over many blocks at once:

- every value is float32 and every operation rounds to float32, in the C order of operations
  (``w*l*x`` is ``(w*l)*x``); ggml-base is built without FMA contraction, so there is none here;
- sums over a sub-block are accumulated left to right (``_seqsum``), never pairwise as
  ``np.sum`` would, because float addition is not associative;
- ``nearest_int`` is ggml's magic-number rounding (add 1.5 * 2**23, keep the mantissa bits),
  emulated bit for bit, so even out-of-range values round as ggml's do;
- float32 -> float16 conversion rounds to nearest even, as ggml's does.

Sub-block data are held transposed, shape ``(values per sub-block, sub-blocks)``, so each
left-to-right sum is a handful of vector additions over all sub-blocks.
Block layouts are documented in ``edgegen.kernels.quants``.
"""
from __future__ import annotations

import numpy as np

from edgegen.constants import QK_K, GGMLType, block_geometry

__all__ = ["quantize_q4_k", "quantize_q6_k"]

F32 = np.float32
_MAGIC = F32(12582912.0)          # 1.5 * 2**23: adding it leaves round(x) in the low mantissa bits
_MANTISSA_MASK = 0x007FFFFF
_MAGIC_BIAS = 0x00400000
_GROUP_MAX_EPS = F32(1e-15)       # ggml's GROUP_MAX_EPS: a group below this amplitude is all zero
_CHUNK_SUPERBLOCKS = 4096         # superblocks quantized per vectorised step (bounds temporaries)

# Q4_K: 8 sub-blocks of 32 values, 4-bit quants with a 6-bit scale and 6-bit min each.
Q4K_SUB = 32
Q4K_NMAX = 15
Q4K_SCALE_MAX = 63
Q4K_RMIN, Q4K_RDELTA, Q4K_NSTEP = F32(-1.0), F32(0.1), 20   # make_qkx2_quants search grid
# Q6_K: 16 sub-blocks of 16 values, 6-bit signed quants with an 8-bit signed scale each.
Q6K_SUB = 16
Q6K_NMAX = 32
Q6K_SCALE_RANGE = 128
Q6K_SEARCH = [s for s in range(-9, 10) if s != 0]             # make_qx_quants search grid
Q6K_STEP = F32(0.1)


def _nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: round half to even through the float32 mantissa, as int32."""
    bits = (np.asarray(v, dtype=F32) + _MAGIC).view(np.int32)
    return (bits & _MANTISSA_MASK) - _MAGIC_BIAS


def _seqsum(a: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum over axis 0 (the C loop order)."""
    acc = a[0].copy()
    for row in a[1:]:
        acc += row
    return acc


def _f16_bits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 -> (float16 bit pattern as uint16, the float16 value back as float32)."""
    half = np.asarray(v, dtype=F32).astype(np.float16)
    return half.view(np.uint16), half.astype(F32)


def _check_input(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (rows, cols) array, found shape {x.shape}")
    if x.shape[1] % QK_K:
        raise ValueError(f"{name}: row length must be a multiple of {QK_K}, found {x.shape[1]}")
    return np.ascontiguousarray(x, dtype=F32)


def _quantize(x: np.ndarray, qtype: GGMLType, blocks_fn) -> np.ndarray:
    rows, cols = x.shape
    _, block_bytes = block_geometry(qtype)
    superblocks = x.reshape(-1, QK_K)
    out = np.empty((superblocks.shape[0], block_bytes), dtype=np.uint8)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, superblocks.shape[0], _CHUNK_SUPERBLOCKS):
            stop = start + _CHUNK_SUPERBLOCKS
            out[start:stop] = blocks_fn(superblocks[start:stop])
    return out.reshape(rows, cols // QK_K * block_bytes)


# ---------------------------------------------------------------------------------------------
# Q4_K
# ---------------------------------------------------------------------------------------------

def _make_qkx2_quants(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml make_qkx2_quants(nmax=15, rmin=-1, rdelta=0.1, nstep=20, use_mad=false) on columns.

    x, w: (n, m) values and weights of m sub-blocks. Returns (scale (m,), the_min (m,), L (n, m))
    with x ~ scale * L - the_min.
    """
    nmax = F32(Q4K_NMAX)
    lo = x.min(axis=0)
    hi = x.max(axis=0)
    sum_w = _seqsum(w)
    sum_x = _seqsum(w * x)
    lo = np.where(lo > 0, F32(0), lo)
    flat = hi == lo

    iscale = nmax / (hi - lo)
    scale = F32(1) / iscale
    levels = np.clip(_nearest_int(iscale * (x - lo)), 0, Q4K_NMAX).astype(F32)
    diff = scale * levels + lo - x
    best_error = _seqsum(w * (diff * diff))
    best_min = lo
    for step in range(Q4K_NSTEP + 1):
        # As in ggml, the grid is laid over [best min so far, max], not over the original range.
        iscale = (Q4K_RMIN + Q4K_RDELTA * F32(step) + nmax) / (hi - best_min)
        trial = np.clip(_nearest_int(iscale * (x - best_min)), 0, Q4K_NMAX).astype(F32)
        wl = w * trial
        sum_l = _seqsum(wl)
        sum_l2 = _seqsum(wl * trial)
        sum_xl = _seqsum(wl * x)
        det = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
        clamp = this_min > 0                      # the min may not be positive: refit scale alone
        this_min = np.where(clamp, F32(0), this_min)
        this_scale = np.where(clamp, sum_xl / sum_l2, this_scale)
        diff = this_scale * trial + this_min - x
        cur_error = _seqsum(w * (diff * diff))
        better = (det > 0) & (cur_error < best_error)
        levels = np.where(better, trial, levels)
        best_error = np.where(better, cur_error, best_error)
        scale = np.where(better, this_scale, scale)
        best_min = np.where(better, this_min, best_min)
    levels = np.where(flat, F32(0), levels)
    scale = np.where(flat, F32(0), scale)
    best_min = np.where(flat, lo, best_min)
    return scale, -best_min, levels


def _q4_k_blocks(xb: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 144) uint8 Q4_K blocks (quantize_row_q4_K_ref)."""
    n = xb.shape[0]
    n_sub = QK_K // Q4K_SUB
    x = np.ascontiguousarray(xb.reshape(-1, Q4K_SUB).T)              # (32, n*8)
    # 1. Weights: RMS of the sub-block plus |x|; fit a scale and a min per sub-block.
    av_x = np.sqrt(_seqsum(x * x) / F32(Q4K_SUB))
    w = av_x + np.abs(x)
    scales, mins, levels = _make_qkx2_quants(x, w)
    scales = scales.reshape(n, n_sub)
    mins = mins.reshape(n, n_sub)
    # 2. Quantize the 8 scales and 8 mins to 6 bits against the block's largest of each.
    max_scale = np.maximum(scales.max(axis=1), F32(0))
    max_min = np.maximum(mins.max(axis=1), F32(0))
    inv_scale = np.where(max_scale > 0, F32(Q4K_SCALE_MAX) / max_scale, F32(0))
    inv_min = np.where(max_min > 0, F32(Q4K_SCALE_MAX) / max_min, F32(0))
    ls = np.minimum(_nearest_int(inv_scale[:, None] * scales) & 0xFF, Q4K_SCALE_MAX)
    lm = np.minimum(_nearest_int(inv_min[:, None] * mins) & 0xFF, Q4K_SCALE_MAX)
    d_bits, d = _f16_bits(max_scale / F32(Q4K_SCALE_MAX))
    dmin_bits, dmin = _f16_bits(max_min / F32(Q4K_SCALE_MAX))
    # 3. Requantize every value against its rounded scale and min (sub-blocks with d == 0 keep L).
    sub_d = (d[:, None] * ls.astype(F32)).reshape(1, -1)
    sub_m = (dmin[:, None] * lm.astype(F32)).reshape(1, -1)
    requant = np.clip(_nearest_int((x + sub_m) / sub_d), 0, Q4K_NMAX).astype(F32)
    levels = np.where(sub_d != 0, requant, levels)
    # 4. Pack: d, dmin, 12 scale bytes, then 4 chunks of 64 values as 32 bytes of nibble pairs.
    q = levels.T.reshape(n, 4, 2, Q4K_SUB).astype(np.uint8)
    ls8, lm8 = ls.astype(np.uint8), lm.astype(np.uint8)
    packed_scales = np.concatenate([
        ls8[:, :4] | ((ls8[:, 4:] >> 4) << 6),
        lm8[:, :4] | ((lm8[:, 4:] >> 4) << 6),
        (ls8[:, 4:] & 0x0F) | ((lm8[:, 4:] & 0x0F) << 4),
    ], axis=1)
    return np.concatenate([
        d_bits.reshape(n, 1).view(np.uint8),
        dmin_bits.reshape(n, 1).view(np.uint8),
        packed_scales,
        (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, -1),
    ], axis=1)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """float32 (rows, cols) with cols % 256 == 0 -> Q4_K bytes (rows, cols / 256 * 144)."""
    return _quantize(_check_input(x, "quantize_q4_k"), GGMLType.Q4_K, _q4_k_blocks)


# ---------------------------------------------------------------------------------------------
# Q6_K
# ---------------------------------------------------------------------------------------------

def _make_qx_quants(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml make_qx_quants(nmax=32, rmse_type=1, no weights) on columns.

    x: (n, m). Returns (scale (m,), L (n, m) in 0..63) with x ~ scale * (L - 32).
    """
    nmax = F32(Q6K_NMAX)
    first_max = np.argmax(np.abs(x), axis=0)
    vmax = np.take_along_axis(x, first_max[None, :], axis=0)[0]
    zero = np.abs(vmax) < _GROUP_MAX_EPS
    w = x * x
    wx = w * x

    def fit(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lev = np.clip(_nearest_int(iscale * x), -Q6K_NMAX, Q6K_NMAX - 1).astype(F32)
        return lev, _seqsum(wx * lev), _seqsum(w * lev * lev)

    levels, sumlx, suml2 = fit(-nmax / vmax)
    scale = np.where(suml2 != 0, sumlx / suml2, F32(0))
    best = scale * sumlx
    for step in Q6K_SEARCH:
        trial, sumlx, suml2 = fit(-(nmax + Q6K_STEP * F32(step)) / vmax)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        levels = np.where(better, trial, levels)
        scale = np.where(better, sumlx / suml2, scale)
        best = np.where(better, scale * sumlx, best)
    levels = np.where(zero, F32(-Q6K_NMAX), levels)
    scale = np.where(zero, F32(0), scale)
    return scale, levels + nmax


def _q6_k_blocks(xb: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 210) uint8 Q6_K blocks (quantize_row_q6_K_ref)."""
    n = xb.shape[0]
    n_sub = QK_K // Q6K_SUB
    x = np.ascontiguousarray(xb.reshape(-1, Q6K_SUB).T)              # (16, n*16)
    # 1. Fit a signed scale per sub-block of 16.
    scales, levels = _make_qx_quants(x)
    scales = scales.reshape(n, n_sub)
    # 2. Quantize the 16 scales to int8 against the one of largest magnitude (first on ties).
    first_max = np.argmax(np.abs(scales), axis=1)
    max_scale = np.take_along_axis(scales, first_max[:, None], axis=1)[:, 0]
    empty = np.abs(max_scale) < _GROUP_MAX_EPS
    iscale = F32(-Q6K_SCALE_RANGE) / max_scale
    d_bits, d = _f16_bits(F32(1) / iscale)
    sc = np.minimum(_nearest_int(iscale[:, None] * scales), Q6K_SCALE_RANGE - 1)
    sc8 = (sc & 0xFF).astype(np.uint8)
    # 3. Requantize against the rounded scales (sub-blocks whose scale rounds to 0 keep L).
    sub_d = (d[:, None] * sc8.view(np.int8).astype(F32)).reshape(1, -1)
    requant = np.clip(_nearest_int(x / sub_d), -Q6K_NMAX, Q6K_NMAX - 1).astype(F32) + F32(Q6K_NMAX)
    levels = np.where(sub_d != 0, requant, levels)
    # 4. Pack two halves of 128 values: low nibbles in ql, high 2 bits in qh.
    q = levels.T.reshape(n, 2, 4, 32).astype(np.uint8)                # (block, half, quarter, l)
    ql = np.concatenate([(q[:, :, 0] & 0x0F) | ((q[:, :, 2] & 0x0F) << 4),
                         (q[:, :, 1] & 0x0F) | ((q[:, :, 3] & 0x0F) << 4)], axis=2)
    qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6)
    out = np.concatenate([ql.reshape(n, -1), qh.reshape(n, -1), sc8, d_bits.reshape(n, 1).view(np.uint8)],
                         axis=1)
    out[empty] = 0
    return out


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """float32 (rows, cols) with cols % 256 == 0 -> Q6_K bytes (rows, cols / 256 * 210)."""
    return _quantize(_check_input(x, "quantize_q6_k"), GGMLType.Q6_K, _q6_k_blocks)
