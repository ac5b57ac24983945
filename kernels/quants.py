"""GGML block formats: one NumPy dequantizer per tensor type, the spec of every kernel.

Each ``dequantize_*`` takes the raw bytes of whole rows, shape ``(rows, row_bytes)``
uint8, and returns float32 ``(rows, cols)``. The arithmetic order follows ggml's
reference C code (and gguf-py), so results match gguf-py bit for bit.

Block layouts (little endian; ``f16`` is IEEE half):
- Q8_0, 32 values, 34 bytes:  d:f16, qs:int8[32];            x = d*q
- Q4_0, 32 values, 18 bytes:  d:f16, qs:u8[16];              x = d*(nibble-8), low nibbles are
  values 0..15 and high nibbles values 16..31
- Q4_1, 32 values, 20 bytes:  d:f16, m:f16, qs:u8[16];       x = d*nibble + m
- Q4_K, 256 values, 144 bytes: d:f16, dmin:f16, scales:u8[12] (8 six-bit scales and
  8 six-bit mins), qs:u8[128]; each 64-value chunk j uses sub-blocks 2j (low nibbles)
  and 2j+1 (high nibbles): x = (d*sc)*q - (dmin*m)
- Q6_K, 256 values, 210 bytes: ql:u8[128] (low 4 bits), qh:u8[64] (high 2 bits),
  scales:int8[16], d:f16; x = (d*sc)*(q-32), one scale per 16 values
"""
from __future__ import annotations

import numpy as np

from edgegen.constants import QK_K, GGMLType, block_geometry


def _split(rows: np.ndarray, block_bytes: int) -> np.ndarray:
    """(rows, row_bytes) uint8 -> (rows * blocks_per_row, block_bytes) uint8."""
    return np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, block_bytes)


def _f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def dequantize_f32(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows).view(np.float32)


def dequantize_f16(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows).view(np.float16).astype(np.float32)


def dequantize_bf16(rows: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(rows).view(np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


def dequantize_q8_0(rows: np.ndarray) -> np.ndarray:
    blocks = _split(rows, 34)
    d = _f16(blocks[:, :2])
    q = blocks[:, 2:].view(np.int8).astype(np.float32)
    return (d * q).reshape(rows.shape[0], -1)


def dequantize_q4_0(rows: np.ndarray) -> np.ndarray:
    blocks = _split(rows, 18)
    d = _f16(blocks[:, :2])
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - np.int8(8)
    return (d * q.astype(np.float32)).reshape(rows.shape[0], -1)


def dequantize_q4_1(rows: np.ndarray) -> np.ndarray:
    blocks = _split(rows, 20)
    d = _f16(blocks[:, :2])
    m = _f16(blocks[:, 2:4])
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(rows.shape[0], -1)


def q4_k_scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack the 12 scale bytes of Q4_K blocks into 8 six-bit scales and 8 mins each."""
    s = scales.reshape(-1, 3, 4)
    lo, hi, mix = s[:, 0], s[:, 1], s[:, 2]
    sc = np.concatenate([lo & 0x3F, (mix & 0x0F) | ((lo >> 2) & 0x30)], axis=1)
    mn = np.concatenate([hi & 0x3F, (mix >> 4) | ((hi >> 2) & 0x30)], axis=1)
    return sc, mn


def dequantize_q4_k(rows: np.ndarray) -> np.ndarray:
    blocks = _split(rows, 144)
    n = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    dmin = _f16(blocks[:, 2:4])
    sc, mn = q4_k_scales_mins(blocks[:, 4:16])
    qs = blocks[:, 16:].reshape(n, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    scale = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    offset = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    return (scale * q - offset).reshape(rows.shape[0], -1)


def dequantize_q6_k(rows: np.ndarray) -> np.ndarray:
    blocks = _split(rows, 210)
    n = blocks.shape[0]
    ql = blocks[:, 0:128].reshape(n, 2, 1, 64)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)
    sc = blocks[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(blocks[:, 208:210])
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)
    high = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 0x03
    q = (low | (high << 4)).astype(np.int8) - np.int8(32)
    scale = (d * sc).reshape(n, QK_K // 16, 1)
    return (scale * q.reshape(n, QK_K // 16, 16).astype(np.float32)).reshape(rows.shape[0], -1)


DEQUANTIZE = {
    GGMLType.F32: dequantize_f32,
    GGMLType.F16: dequantize_f16,
    GGMLType.BF16: dequantize_bf16,
    GGMLType.Q8_0: dequantize_q8_0,
    GGMLType.Q4_0: dequantize_q4_0,
    GGMLType.Q4_1: dequantize_q4_1,
    GGMLType.Q4_K: dequantize_q4_k,
    GGMLType.Q6_K: dequantize_q6_k,
}


def dequantize(rows: np.ndarray, qtype: GGMLType, cols: int) -> np.ndarray:
    """Raw rows (rows, row_bytes) uint8 of type ``qtype`` -> float32 (rows, cols)."""
    block_values, block_bytes = block_geometry(qtype)
    rows2d = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, cols // block_values * block_bytes)
    return DEQUANTIZE[qtype](rows2d).reshape(rows2d.shape[0], cols)
