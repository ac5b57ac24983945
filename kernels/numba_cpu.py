"""Numba CPU twins of the kernels in ``ref.py``: same names, same arguments, same results.

Each public function is a thin wrapper over one ``@njit(cache=True, parallel=True)`` kernel
(``prange`` over output rows, strict IEEE arithmetic: ``fastmath`` off). Weights stay in
their GGUF block bytes: ``matmul`` decodes ``CHUNK`` values (whole blocks) at a time into a
small local array and accumulates it against every activation row, so the dequantized matrix
never exists. Accumulation is float32 in ``CHUNK`` lanes per output, folded at the end.

Block decoding follows ``quants.py`` operation by operation (the same float32 products and
sums in the same order), so ``get_rows`` is bit-exact against ``quants.dequantize``.
To keep JIT time low every kernel has one specialisation: the quant type is a runtime int
switched on per chunk by ``_decode`` (compiled once, shared by ``matmul`` and ``get_rows``),
and input arrays are passed as read-only views so that mmapped (read-only) weights and
freshly allocated arrays share one compiled signature.

Threads: a wrapper calls ``numba.set_num_threads(min(threads, NUMBA_NUM_THREADS))`` when
that differs from ``numba.get_num_threads()``. It is the only global setting this module
touches; Numba keeps it per calling thread.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from edgegen.constants import QK_K, GGMLType, RopeStyle, block_geometry, row_bytes

# Quant type ids as plain ints: the compiled code switches on them.
F32, F16, BF16 = int(GGMLType.F32), int(GGMLType.F16), int(GGMLType.BF16)
Q8_0, Q4_0, Q4_1 = int(GGMLType.Q8_0), int(GGMLType.Q4_0), int(GGMLType.Q4_1)
Q4_K, Q6_K = int(GGMLType.Q4_K), int(GGMLType.Q6_K)
SUPPORTED = frozenset({F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K})

# Bytes per block, as ints the compiled code folds in (values per block arrive at run time).
_Q8_0_B, _Q4_0_B, _Q4_1_B = (block_geometry(t)[1] for t in (GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1))
_Q4_K_B, _Q6_K_B = block_geometry(GGMLType.Q4_K)[1], block_geometry(GGMLType.Q6_K)[1]

CHUNK = QK_K        # values decoded per step: a multiple of every block size
ELEM_CHUNK = 1024   # elements per parallel job in elementwise kernels
_FOLD_MIN = 8       # matmul sums its CHUNK lanes by vector folds down to this width

# IEEE half: sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
_H_EXP_MAX = 31
_H_MANT_BITS = 10
_H_IMPLICIT = 1 << _H_MANT_BITS
# _POW2[e] = 2**(e - 25): a normal half is (1024 + mant) * 2**(exp - 15 - 10).
_POW2 = np.array([2.0 ** (e - 25) for e in range(_H_EXP_MAX + 1)], dtype=np.float32)
_SUBNORMAL_STEP = np.float32(2.0 ** -24)  # value of the least half mantissa bit at exponent 0
# Half -> float bit patterns: shift exponent+mantissa up 13 bits and rebias the exponent by
# 127 - 15 = 112; Inf/NaN by 255 - 31 = 224; zero/subnormal as 1 + 112, then subtract 2**-14.
_H_SHIFT = 23 - _H_MANT_BITS
_H_EXP_BITS = _H_EXP_MAX << _H_MANT_BITS
_REBIAS, _REBIAS_INF, _REBIAS_SUB = 112 << 23, 224 << 23, 113 << 23
_SUB_MAGIC = np.float32(2.0 ** -14)
_Q4_OFFSET, _Q6_OFFSET = 8, 32

# Performance notes for the decoders (all inlined into ``_decode``). Inner loop counts derive
# from ``bv``, the block's value count passed at run time: LLVM fully unrolls constant
# 32-iteration loops and then cannot vectorize them (it cannot prove ``row`` and ``dst`` apart),
# while a runtime count leaves a loop it vectorizes behind an overlap check. Indices go through
# ``_u`` (uint64) so Numba emits no negative-index wraparound, which also blocks vectorizing.
_u = numba.uint64


# ---------------------------------------------------------------------------------------------
# Block decoding: one function per format, all dispatched by ``_decode``.
# ---------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def f16_to_f32(h):
    """IEEE half bits (int) -> float32, exact (NaN payloads are not kept)."""
    sign = (h >> 15) & 1
    exp = (h >> _H_MANT_BITS) & _H_EXP_MAX
    mant = h & (_H_IMPLICIT - 1)
    if exp == 0:
        v = np.float32(mant) * _SUBNORMAL_STEP
    elif exp == _H_EXP_MAX:
        v = np.float32(np.inf) if mant == 0 else np.float32(np.nan)
    else:
        v = np.float32(mant + _H_IMPLICIT) * _POW2[exp]
    return -v if sign else v


@njit(cache=True, inline="always")
def _half_at(row, o):
    return f16_to_f32(np.int64(row[o]) | (np.int64(row[o + 1]) << 8))


@njit(cache=True, inline="always")
def _decode_f16(src, k0, n, dst):
    """n halves src[k0:] -> dst[:n] built as float32 bit patterns (exact, NaN payloads kept)."""
    bits = dst.view(np.uint32)
    for i in range(n):
        h = np.int64(src[_u(k0 + i)])
        e = h & _H_EXP_BITS
        rebias = _REBIAS_INF if e == _H_EXP_BITS else (_REBIAS_SUB if e == 0 else _REBIAS)
        bits[_u(i)] = (((h & 0x7FFF) << _H_SHIFT) + rebias) | ((h & 0x8000) << 16)
    for i in range(n):
        if (np.int64(src[_u(k0 + i)]) & _H_EXP_BITS) == 0:   # zero/subnormal: 2**-14 * (1 + m/1024) - 2**-14
            v = dst[_u(i)]
            dst[_u(i)] = math.copysign(abs(v) - _SUB_MAGIC, v)


@njit(cache=True, inline="always")
def _decode_q8_0(row, o, dst, d0, bv):
    d = _half_at(row, o)
    for i in range(bv):
        q = (np.int64(row[_u(o + 2 + i)]) ^ 0x80) - 0x80   # uint8 bits -> int8 value
        dst[_u(d0 + i)] = d * np.float32(q)


@njit(cache=True, inline="always")
def _decode_q4_0(row, o, dst, d0, bv):
    d = _half_at(row, o)
    half = bv // 2
    for j in range(half):
        b = np.int64(row[_u(o + 2 + j)])
        dst[_u(d0 + j)] = d * np.float32((b & 0x0F) - _Q4_OFFSET)
        dst[_u(d0 + half + j)] = d * np.float32((b >> 4) - _Q4_OFFSET)


@njit(cache=True, inline="always")
def _decode_q4_1(row, o, dst, d0, bv):
    d = _half_at(row, o)
    m = _half_at(row, o + 2)
    half = bv // 2
    for j in range(half):
        b = np.int64(row[_u(o + 4 + j)])
        dst[_u(d0 + j)] = d * np.float32(b & 0x0F) + m
        dst[_u(d0 + half + j)] = d * np.float32(b >> 4) + m


@njit(cache=True, inline="always")
def _q4_k_scale_min(row, s, j):
    """Six-bit scale and min of sub-block j (0..7) from the 12 scale bytes at row[s:]."""
    if j < 4:
        return np.int64(row[s + j]) & 0x3F, np.int64(row[s + j + 4]) & 0x3F
    mix = np.int64(row[s + j + 4])
    sc = (mix & 0x0F) | ((np.int64(row[s + j - 4]) >> 6) << 4)
    mn = (mix >> 4) | ((np.int64(row[s + j]) >> 6) << 4)
    return sc, mn


@njit(cache=True, inline="always")
def _decode_q4_k(row, o, dst, d0, bv):
    d = _half_at(row, o)
    dmin = _half_at(row, o + 2)
    sub = bv // 8                       # 8 sub-blocks of 32 values
    for c in range(4):                  # 64-value chunk c: sub-block 2c low nibbles, 2c+1 high
        sc_lo, mn_lo = _q4_k_scale_min(row, o + 4, 2 * c)
        sc_hi, mn_hi = _q4_k_scale_min(row, o + 4, 2 * c + 1)
        scale_lo, off_lo = d * np.float32(sc_lo), dmin * np.float32(mn_lo)
        scale_hi, off_hi = d * np.float32(sc_hi), dmin * np.float32(mn_hi)
        qs, out = o + 16 + sub * c, d0 + 2 * sub * c
        for l in range(sub):
            b = np.int64(row[_u(qs + l)])
            dst[_u(out + l)] = scale_lo * np.float32(b & 0x0F) - off_lo
            dst[_u(out + sub + l)] = scale_hi * np.float32(b >> 4) - off_hi


@njit(cache=True, inline="always")
def _decode_q6_k(row, o, dst, d0, bv):
    d = _half_at(row, o + 208)
    sub = bv // 16                      # 16 sub-blocks of 16 values, one int8 scale each
    for g in range(16):                 # value index 128*half + 32*quarter + 16*(g & 1) + l
        half, quarter = g // 8, (g // 2) % 4
        ql = o + 64 * half + 32 * (quarter & 1) + sub * (g & 1)   # low 4 bits: nibble quarter // 2
        qh = o + 128 + 32 * half + sub * (g & 1)                  # high 2 bits: bits 2*quarter
        shift_lo, shift_hi = 4 * (quarter // 2), 2 * quarter
        scale = d * np.float32((np.int64(row[o + 192 + g]) ^ 0x80) - 0x80)
        for l in range(sub):
            low = (np.int64(row[_u(ql + l)]) >> shift_lo) & 0x0F
            high = (np.int64(row[_u(qh + l)]) >> shift_hi) & 0x03
            dst[_u(d0 + sub * g + l)] = scale * np.float32((low | (high << 4)) - _Q6_OFFSET)


@njit(cache=True)
def _decode(row, qtype, bv, k0, n, dst):
    """Write values k0 .. k0+n of one raw row into dst[:n]; ``bv`` is the block's value count.

    Quantized types: k0 and n are whole blocks. Float types: any k0, n.
    """
    if qtype == F32:
        src = row.view(np.float32)
        for i in range(n):
            dst[_u(i)] = src[_u(k0 + i)]
    elif qtype == F16:
        _decode_f16(row.view(np.uint16), k0, n, dst)
    elif qtype == BF16:
        src, bits = row.view(np.uint16), dst.view(np.uint32)
        for i in range(n):
            bits[_u(i)] = np.uint32(src[_u(k0 + i)]) << 16
    elif qtype == Q8_0:
        for b in range(k0 // bv, (k0 + n) // bv):
            _decode_q8_0(row, b * _Q8_0_B, dst, b * bv - k0, bv)
    elif qtype == Q4_0:
        for b in range(k0 // bv, (k0 + n) // bv):
            _decode_q4_0(row, b * _Q4_0_B, dst, b * bv - k0, bv)
    elif qtype == Q4_1:
        for b in range(k0 // bv, (k0 + n) // bv):
            _decode_q4_1(row, b * _Q4_1_B, dst, b * bv - k0, bv)
    elif qtype == Q4_K:
        for b in range(k0 // bv, (k0 + n) // bv):
            _decode_q4_k(row, b * _Q4_K_B, dst, b * bv - k0, bv)
    elif qtype == Q6_K:
        for b in range(k0 // bv, (k0 + n) // bv):
            _decode_q6_k(row, b * _Q6_K_B, dst, b * bv - k0, bv)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _matmul_kernel(w, qtype, bv, K, x, out):
    T, N = x.shape[0], w.shape[0]
    for n in prange(N):
        row = w[n]
        vals = np.empty(CHUNK, dtype=np.float32)
        acc = np.zeros((T, CHUNK), dtype=np.float32)  # per-lane partial sums: the loop vectorizes
        for k0 in range(0, K, CHUNK):
            m = min(CHUNK, K - k0)
            _decode(row, qtype, bv, k0, m, vals)        # decoded once, used by all T rows
            for t in range(T):
                lanes, xt = acc[t], x[t, k0:k0 + m]   # 1-D views: LLVM vectorizes these, not 2-D indexing
                for i in range(m):
                    lanes[i] += vals[i] * xt[i]
        for t in range(T):                            # fold the lanes in halves, then sum the last few
            lanes, width = acc[t], CHUNK // 2
            while width >= _FOLD_MIN:
                for i in range(width):
                    lanes[i] += lanes[i + width]
                width //= 2
            s = 0.0
            for i in range(2 * width):
                s += lanes[i]
            out[t, n] = s


@njit(cache=True, parallel=True)
def _get_rows_kernel(w, qtype, bv, K, ids, out):
    for t in prange(ids.shape[0]):
        row, dst = w[ids[t]], out[t]
        for k0 in range(0, K, CHUNK):
            m = min(CHUNK, K - k0)
            _decode(row, qtype, bv, k0, m, dst[k0:k0 + m])


@njit(cache=True, parallel=True)
def _rmsnorm_kernel(x, weight, eps, out):
    T, D = x.shape
    for t in prange(T):
        ss = 0.0
        for i in range(D):
            v = np.float64(x[t, i])
            ss += v * v
        inv = 1.0 / math.sqrt(ss / D + eps)
        for i in range(D):
            out[t, i] = np.float64(x[t, i]) * inv * np.float64(weight[i])


@njit(cache=True, parallel=True)
def _rope_kernel(x, positions, n_rot, theta, neox):
    T, H, _ = x.shape
    half = n_rot // 2
    for t in prange(T):
        cos, sin = np.empty(half), np.empty(half)
        for i in range(half):
            ang = np.float64(positions[t]) * theta ** (-(i * 2.0) / n_rot)
            cos[i], sin[i] = math.cos(ang), math.sin(ang)
        for h in range(H):
            for i in range(half):
                ia, ib = (i, i + half) if neox else (2 * i, 2 * i + 1)
                a, b = np.float64(x[t, h, ia]), np.float64(x[t, h, ib])
                x[t, h, ia] = a * cos[i] - b * sin[i]
                x[t, h, ib] = a * sin[i] + b * cos[i]


@njit(cache=True, inline="always")
def _dot(a, b, n):
    """sum a[i] * b[i] in float32 over 8 interleaved partial sums (vectorizes without fastmath)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    n8 = n - n % 8
    for i in range(0, n8, 8):
        s0 += a[_u(i)] * b[_u(i)]
        s1 += a[_u(i + 1)] * b[_u(i + 1)]
        s2 += a[_u(i + 2)] * b[_u(i + 2)]
        s3 += a[_u(i + 3)] * b[_u(i + 3)]
        s4 += a[_u(i + 4)] * b[_u(i + 4)]
        s5 += a[_u(i + 5)] * b[_u(i + 5)]
        s6 += a[_u(i + 6)] * b[_u(i + 6)]
        s7 += a[_u(i + 7)] * b[_u(i + 7)]
    for i in range(n8, n):
        s0 += a[_u(i)] * b[_u(i)]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, parallel=True)
def _attention_kernel(q, k_cache, v_cache, pos0, scale, out):
    T, Hq, Dh = q.shape
    group = Hq // k_cache.shape[0]
    for job in prange(T * Hq):
        t, h = job // Hq, job % Hq
        qv, keys, values = q[t, h], k_cache[h // group], v_cache[h // group]
        acc = np.zeros(Dh, dtype=np.float32)
        run_max, run_sum = -np.inf, 0.0       # online softmax: one pass over the keys
        for j in range(pos0 + t + 1):
            s = _dot(qv, keys[j], Dh) * scale
            if s > run_max:                   # new max: rescale what was summed so far
                c = math.exp(run_max - s)
                run_sum *= c
                for i in range(Dh):
                    acc[i] *= np.float32(c)
                run_max = s
            p = math.exp(s - run_max)
            run_sum += p
            p32, vj = np.float32(p), values[j]
            for i in range(Dh):
                acc[i] += p32 * vj[i]
        for i in range(Dh):
            out[t, h, i] = acc[i] / run_sum


@njit(cache=True, parallel=True)
def _swiglu_kernel(gate, up, out):
    T, F = gate.shape
    chunks = (F + ELEM_CHUNK - 1) // ELEM_CHUNK
    for job in prange(T * chunks):
        t, f0 = job // chunks, job % chunks * ELEM_CHUNK
        for f in range(f0, min(f0 + ELEM_CHUNK, F)):
            g = np.float64(gate[t, f])
            out[t, f] = g / (1.0 + math.exp(-g)) * np.float64(up[t, f])


# ---------------------------------------------------------------------------------------------
# Public wrappers: the signatures of ref.py
# ---------------------------------------------------------------------------------------------

def _set_threads(threads: int) -> None:
    n = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    if n != numba.get_num_threads():
        numba.set_num_threads(n)


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view, so writable and mmapped inputs share one compiled signature."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def _block_values(qtype: int, K: int, w: np.ndarray) -> int:
    """Values per block of ``qtype``; ValueError for an unsupported type or rows of the wrong size."""
    if qtype not in SUPPORTED:
        raise ValueError(f"numba kernels: unsupported qtype {qtype}; expected one of {sorted(SUPPORTED)}")
    _expect(w.ndim == 2 and w.shape[1] == row_bytes(qtype, K),
            f"{GGMLType(qtype).name} weights of {K} columns: rows of {row_bytes(qtype, K)} bytes", w.shape)
    return block_geometry(qtype)[0]


def _expect(ok: bool, expected: str, found: object) -> None:
    """The wrappers check only what keeps the unchecked compiled loops inside their arrays."""
    if not ok:
        raise ValueError(f"numba kernels: expected {expected}, found {found}")


def matmul(w: np.ndarray, qtype: int, K: int, x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out[t, n] = sum_k W[n, k] * x[t, k], W the raw rows ``w`` (N, row_bytes) of ``qtype``."""
    qtype = int(qtype)
    bv = _block_values(qtype, K, w)
    _expect(x.ndim == 2 and x.shape[1] == K, f"x of shape (T, {K})", x.shape)
    _expect(out.shape == (x.shape[0], w.shape[0]), f"out of shape {(x.shape[0], w.shape[0])}", out.shape)
    _set_threads(threads)
    _matmul_kernel(_ro(w), qtype, bv, int(K), _ro(x), out)


def get_rows(w: np.ndarray, qtype: int, K: int, ids: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out[t] = dequantize(w[ids[t]]); ids (T,), out (T, K)."""
    qtype = int(qtype)
    bv = _block_values(qtype, K, w)
    ids = np.asarray(ids, dtype=np.int32)
    lo, hi = ids.min(initial=0), ids.max(initial=0)
    _expect(ids.ndim == 1 and lo >= 0 and (ids.size == 0 or hi < w.shape[0]),
            f"ids (T,) in 0..{w.shape[0] - 1}", f"{ids.shape} in {lo}..{hi}")
    _expect(out.shape == (ids.size, K), f"out of shape {(ids.size, K)}", out.shape)
    _set_threads(threads)
    _get_rows_kernel(_ro(w), qtype, bv, int(K), _ro(ids), out)


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray, threads: int = 1) -> None:
    """out = x / sqrt(mean(x^2) + eps) * weight, per row of x (T, D)."""
    _expect(x.ndim == 2 and weight.shape == x.shape[1:] and out.shape == x.shape,
            "x (T, D), weight (D,), out like x", f"{x.shape}, {weight.shape}, {out.shape}")
    _set_threads(threads)
    _rmsnorm_kernel(_ro(x), _ro(weight), float(eps), out)


def rope(x: np.ndarray, positions: np.ndarray, n_rot: int, theta: float, style: int, threads: int = 1) -> None:
    """Rotate the first ``n_rot`` dims of each head of x (T, H, Dh) in place (see ``ref.rope_ref``)."""
    positions = np.asarray(positions, dtype=np.int32)
    _expect(x.ndim == 3 and positions.shape == x.shape[:1] and 0 <= n_rot <= x.shape[2] and n_rot % 2 == 0,
            "x (T, H, Dh), positions (T,), an even n_rot <= Dh", f"{x.shape}, {positions.shape}, {n_rot}")
    neox = RopeStyle(int(style)) == RopeStyle.NEOX
    _set_threads(threads)
    _rope_kernel(x, _ro(positions), int(n_rot), float(theta), neox)


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int, scale: float,
              out: np.ndarray, threads: int = 1) -> None:
    """Causal grouped-query attention of q (T, Hq, Dh) over caches (Hkv, C, Dh); out (T, Hq, Dh)."""
    ok = (q.ndim == 3 and k_cache.ndim == 3 and k_cache.shape == v_cache.shape and out.shape == q.shape
          and k_cache.shape[2] == q.shape[2] and q.shape[1] % k_cache.shape[0] == 0
          and 0 <= pos0 and pos0 + q.shape[0] <= k_cache.shape[1])
    _expect(ok, "q (T, Hq, Dh), caches (Hkv, C, Dh) with Hq % Hkv == 0 and pos0 + T <= C, out like q",
            f"q {q.shape}, k {k_cache.shape}, v {v_cache.shape}, out {out.shape}, pos0 {pos0}")
    _set_threads(threads)
    _attention_kernel(_ro(q), _ro(k_cache), _ro(v_cache), int(pos0), float(scale), out)


def swiglu(gate: np.ndarray, up: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out = silu(gate) * up over (T, F); ``out`` may be ``gate``."""
    _expect(gate.ndim == 2 and up.shape == gate.shape and out.shape == gate.shape,
            "gate (T, F), up and out like gate", f"{gate.shape}, {up.shape}, {out.shape}")
    _set_threads(threads)
    _swiglu_kernel(_ro(gate), _ro(up), out)
