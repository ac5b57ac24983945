"""llama.cpp's CPU arithmetic (ggml, x86 builds with AVX2 and FMA, or AVX-512), op by op, in NumPy.

The ``ggml`` kernels: the same calling convention as ``ref.py``, but each function rounds where
ggml's CPU backend rounds and sums in the order it sums, so a model run through them gives the
logits of llama.cpp built for AVX2 (llama-cpp-python 0.3.36 was checked) bit for bit. The
``ggml-avx512`` kernels (``width=16`` below) do the same for a build with AVX-512, whose float
vectors are 16 lanes wide and whose expf is another form; the 8-bit dot products, quantization,
rms_norm and RoPE are the same code in both builds. They are
a yardstick, not a fast path: edgegen's own kernels sum in other orders, and with every matmul
input rounded to 8 bits, last-bit differences grow into different near-tie choices (even
between llama.cpp's own AVX2 and AVX-512 builds; benchmarks/RESULTS.md). With these kernels
edgegen's model code (graph, weights, tokenizer, RoPE layout, cache) is shown to be llama.cpp's.

What is followed (ggml-cpu, x86 AVX2):
- matmul on Q4_1 / Q8_0 weights: activations quantized per 32 values (``quantize_row_q8_1`` /
  ``_q8_0``: d = max|x| / 127 kept as f16, q = round_half_even(x * (127 / max|x|)), and for
  Q8_1 s = f16(d * sum q) with the unrounded d); per output, 8 float lanes, lane j holding the
  integer sum of values 4j..4j+3 of each block, accumulated over blocks by fused multiply-add
  with d_w * d_x, folded as ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)); Q4_1 adds its mins term m * s
  per block (a fused multiply-add into a float running sum) after the fold;
- rms_norm fused with its weight: sum of float32 squares in float64, mean and 1/sqrt in float32,
  y = x * scale * w;
- RoPE: angles p * theta_scale^i built by repeated float32 multiplication, libm cosf / sinf,
  x0*cos - x1*sin with the first product fused;
- attention (no flash attention, float32 KV cache): K.q as ``ggml_vec_dot_f32`` (four 8-lane
  fused accumulators over runs of 32 values, then its reduction order; q is a permuted view, so
  llama.cpp takes this path), the softmax with ggml's vectorised expf in 8-value groups summed in
  float64 and scaled by float32(1 / sum), V.p as llamafile's tinyBLAS (one 8-lane accumulator)
  for two or more tokens and as ``ggml_vec_dot_f32`` for one (llamafile_sgemm declines a single
  column), so, like llama.cpp, a prompt in one batch and token by token differ in the last bits;
- SwiGLU: x / (1 + expf(-x)) * g with the same vectorised expf.
Fused multiply-adds are computed in float64 and rounded once to float32 (exact but for double
rounding, about one case in 2^29). With ``width=16``: vec_dot_f32 keeps four 16-lane accumulators
(runs of 64) and ends with _mm512_reduce_add_ps, tinyBLAS keeps one 16-lane accumulator, the
softmax sums 16-value vectors, and expf is ggml's AVX-512 form (a polynomial in 1 + ... and
_mm512_scalef_ps).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numba
import numpy as np

from edgegen.constants import GGMLType, RopeStyle
from edgegen.errors import UsageError
from edgegen.kernels.numba_cpu import _set_threads
from edgegen.kernels import quants, ref

F32, F64 = np.float32, np.float64
LANES = 8          # one __m256 of float32
QK = 32            # values per Q8_0 / Q8_1 / Q4_1 block


def _fma(a, b, c) -> np.ndarray:
    """float32 a * b + c rounded once (through float64, where a * b is exact)."""
    return (np.asarray(a, F64) * np.asarray(b, F64) + np.asarray(c, F64)).astype(F32)


def _fold8(acc: np.ndarray) -> np.ndarray:
    """ggml's hsum_float_8 over the last axis (8 lanes): ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))."""
    r = acc[..., 4:] + acc[..., :4]            # 4 lanes, float32 adds
    r2 = r[..., :2] + r[..., 2:]
    return r2[..., 0] + r2[..., 1]


def _hsum(acc: np.ndarray) -> np.ndarray:
    """A vector's horizontal sum over the last axis: 8 lanes as _fold8; 16 as GCC's
    _mm512_reduce_add_ps (the two 256-bit halves added, then as _fold8)."""
    return _fold8(acc[..., 8:] + acc[..., :8]) if acc.shape[-1] == 16 else _fold8(acc)


# ---- activations to 8 bits (quantize_row_q8_0 / quantize_row_q8_1) -----------------------------

def quantize_q8(x: np.ndarray, with_sum: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """x (T, K) -> q int8 (T, K/32, 32), d float32 (T, K/32) (the f16 value), s float32 (the f16 value).

    q and d are ref.quantize_act_ref's (the same rounding as ggml's); s is block_q8_1's
    f16(d * sum q) with the unrounded d = max|x| / 127."""
    T, K = x.shape
    q, d = ref.quantize_act_ref(x, QK)
    q = q.reshape(T, K // QK, QK)
    if not with_sum:
        return q, d, None
    unrounded = np.abs(x.reshape(T, K // QK, QK).astype(F32)).max(axis=-1) / F32(127)
    s = (unrounded * q.astype(np.int32).sum(axis=-1).astype(F32)).astype(np.float16).astype(F32)
    return q, d, s


# ---- weight blocks ------------------------------------------------------------------------------

def _q4_1_blocks(w: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_1 rows (N, row_bytes) -> (d, m) float32 (N, K/32) and nibbles uint8 (N, K/32, 32) in value order."""
    N, B = w.shape[0], K // QK
    b = quants._split(w, 20)
    qs = b[:, 4:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
    return quants._f16(b[:, 0:2]).reshape(N, B), quants._f16(b[:, 2:4]).reshape(N, B), nibbles.reshape(N, B, QK)


def _q8_0_blocks(w: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Q8_0 rows (N, row_bytes) -> d float32 (N, K/32) and quants int8 (N, K/32, 32)."""
    N, B = w.shape[0], K // QK
    b = quants._split(w, 34)
    return quants._f16(b[:, 0:2]).reshape(N, B), b[:, 2:].view(np.int8).reshape(N, B, QK)


def _lane_sums(wq: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Integer lane sums: wq (N, B, 32), xq (T, B, 32) -> (B, T, N, 8) float32, lane j = sum over
    values 4j..4j+3 of the block (exact: |sum| < 2^15)."""
    N, B, _ = wq.shape
    T = xq.shape[0]
    w4 = wq.reshape(N, B, LANES, 4).astype(F32).transpose(1, 2, 3, 0)     # (B, 8, 4, N)
    x4 = xq.reshape(T, B, LANES, 4).astype(F32).transpose(1, 2, 0, 3)     # (B, 8, T, 4)
    return np.matmul(x4, w4).transpose(0, 2, 3, 1)                        # (B, T, N, 8)


ROWS_PER_CHUNK = 4096   # weight rows per pass: bounds the (B, T, rows, 8) lane sums


def _matmul_q_numpy(w: np.ndarray, qtype: GGMLType, K: int, x: np.ndarray, out: np.ndarray) -> None:
    """The spec of ``_matmul_q`` (array at a time; slow on large T): tests hold the two equal."""
    q4_1 = qtype == GGMLType.Q4_1
    xq, xd, xs = quantize_q8(x, with_sum=q4_1)
    for n0 in range(0, w.shape[0], ROWS_PER_CHUNK):
        rows = w[n0:n0 + ROWS_PER_CHUNK]
        if q4_1:
            wd, wm, wq = _q4_1_blocks(rows, K)
        else:
            (wd, wq), wm = _q8_0_blocks(rows, K), None
        lanes = _lane_sums(wq, xq)                                          # (B, T, n, 8)
        acc = np.zeros(lanes.shape[1:], F32)
        summs = np.zeros(lanes.shape[1:3], F32)
        for b in range(lanes.shape[0]):
            scale = (wd[None, :, b] * xd[:, b, None]).astype(F32)           # d_w * d_x, float32
            acc = _fma(scale[..., None], lanes[b], acc)
            if q4_1:
                summs = _fma(wm[None, :, b], xs[:, b, None], summs)
        res = _fold8(acc)
        out[:, n0:n0 + rows.shape[0]] = res + summs if q4_1 else res


_UNPACKED: dict[tuple, tuple[np.ndarray, ...]] = {}
_UNPACKED_MAX = 512   # weight matrices kept unpacked (a 30-layer model has 211)


def _unpacked(w: np.ndarray, qtype: GGMLType, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d, m, quants) of a weight matrix, unpacked once per matrix (weights do not change: the
    key is the buffer's address, shape and type; the entry holds ``w`` so the address stays its).
    The unpacked copy is about twice the packed size and lives as long as the process (or until
    _UNPACKED_MAX matrices): these kernels are a yardstick for tests and tools, not a runtime."""
    key = (w.__array_interface__["data"][0], w.shape, int(qtype), K)
    hit = _UNPACKED.get(key)
    if hit is None:
        if qtype == GGMLType.Q4_1:
            hit = _q4_1_blocks(w, K)
        else:
            d, q = _q8_0_blocks(w, K)
            hit = (d, np.zeros_like(d), q)
        if len(_UNPACKED) >= _UNPACKED_MAX:
            _UNPACKED.clear()
        _UNPACKED[key] = hit + (w,)
        hit = _UNPACKED[key]
    return hit[0], hit[1], hit[2]


@numba.njit(cache=True, parallel=True)
def _q_dot_kernel(wq, wd, wm, xq, xd, xs, q4_1, out):  # pragma: no cover  (compiled)
    """out[t, n]: _matmul_q_numpy's arithmetic, one (row, token) at a time (fused multiply-adds
    in float64 rounded to float32, as _fma)."""
    N, B = wd.shape
    T = xd.shape[0]
    for n in numba.prange(N):
        acc = np.empty(LANES, np.float32)
        for t in range(T):
            acc[:] = 0.0
            summs = np.float32(0.0)
            for b in range(B):
                scale = np.float32(wd[n, b] * xd[t, b])
                for j in range(LANES):
                    lane = 0
                    for i in range(4 * j, 4 * j + 4):
                        lane += np.int32(wq[n, b, i]) * np.int32(xq[t, b, i])
                    acc[j] = np.float32(np.float64(scale) * np.float64(lane) + np.float64(acc[j]))
                if q4_1:
                    summs = np.float32(np.float64(wm[n, b]) * np.float64(xs[t, b]) + np.float64(summs))
            r0, r1 = np.float32(acc[4] + acc[0]), np.float32(acc[5] + acc[1])
            r2, r3 = np.float32(acc[6] + acc[2]), np.float32(acc[7] + acc[3])
            res = np.float32(np.float32(r0 + r2) + np.float32(r1 + r3))
            out[t, n] = np.float32(res + summs) if q4_1 else res


def _matmul_q(w: np.ndarray, qtype: GGMLType, K: int, x: np.ndarray, out: np.ndarray) -> None:
    """out (T, N): each (row, token) as ggml's vec_dot_q4_1_q8_1 / vec_dot_q8_0_q8_0 (compiled)."""
    q4_1 = qtype == GGMLType.Q4_1
    xq, xd, xs = quantize_q8(x, with_sum=q4_1)
    wd, wm, wq = _unpacked(w, qtype, K)
    xs = xs if q4_1 else np.zeros(xd.shape, F32)
    res = np.empty((x.shape[0], w.shape[0]), F32)
    _q_dot_kernel(wq, wd, wm, xq, xd, xs, q4_1, res)
    out[...] = res


MATMUL_TYPES = (GGMLType.Q4_1, GGMLType.Q8_0)


def check_weights(tensors) -> None:
    """Refuse, before any token is computed, a model whose matmul weights (QTensor-likes with
    ``name`` and ``qtype``) these kernels do not follow."""
    for t in tensors:
        if GGMLType(t.qtype) not in MATMUL_TYPES:
            raise UsageError(f"kernels 'ggml' follow llama.cpp for Q4_1 and Q8_0 weights only; "
                             f"{t.name} is {GGMLType(t.qtype).name}")


def matmul(w: np.ndarray, qtype: GGMLType, K: int, x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """out (T, N) = x (T, K) times the weight rows, as ggml's vec_dot_q4_1_q8_1 / vec_dot_q8_0_q8_0."""
    qtype = GGMLType(qtype)
    if qtype not in MATMUL_TYPES:
        raise UsageError(f"kernels 'ggml' follow llama.cpp for Q4_1 and Q8_0 weights only, found {qtype.name}")
    _set_threads(threads)    # rows are independent: the thread count does not change a bit
    _matmul_q(w, qtype, K, np.ascontiguousarray(x, F32), out)


# Embedding rows: ggml's dequantize_row is d * q in float32, as quants.dequantize (ref's get_rows).
get_rows = ref.get_rows_ref


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray, threads: int = 1) -> None:
    """ggml_compute_forward_rms_norm_f32 fused with its MUL: (x * scale) * w."""
    x = x.astype(F32, copy=False)
    sq = (x * x).astype(F64)                                   # float32 squares
    ss = np.zeros(x.shape[:-1], F64)
    for i in range(x.shape[-1]):                               # summed in float64, in order
        ss += sq[..., i]
    mean = (ss / x.shape[-1]).astype(F32)[..., None]
    scale = (F32(1) / np.sqrt(mean + F32(eps))).astype(F32)
    out[...] = (x * scale) * weight.astype(F32)


# ---- RoPE ---------------------------------------------------------------------------------------

@functools.cache
def _libm():
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    for name in ("cosf", "sinf", "powf"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_float
        fn.argtypes = [ctypes.c_float] * (2 if name == "powf" else 1)
    return lib


@functools.lru_cache(maxsize=4096)
def _rope_row(pos: int, n_rot: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position ``pos`` for each pair, as ggml_rope_cache_init (float32 throughout)."""
    lib = _libm()
    theta_scale = F32(lib.powf(F32(theta), F32(-2.0) / F32(n_rot)))
    angle = F32(pos)
    cos, sin = np.empty(n_rot // 2, F32), np.empty(n_rot // 2, F32)
    for i in range(n_rot // 2):
        cos[i], sin[i] = lib.cosf(angle), lib.sinf(angle)
        angle = F32(angle * theta_scale)
    return cos, sin


def rope(x: np.ndarray, positions: np.ndarray, n_rot: int, theta: float, style: RopeStyle, threads: int = 1) -> None:
    """x (T, H, Dh) rotated in place: x0*cos - x1*sin and x0*sin + x1*cos, each with its first product fused."""
    half = n_rot // 2
    cs = np.stack([_rope_row(int(p), n_rot, float(theta)) for p in positions])   # (T, 2, half)
    cos, sin = cs[:, None, 0, :], cs[:, None, 1, :]
    if RopeStyle(style) == RopeStyle.NORMAL:
        a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
        x[..., 0:n_rot:2] = _fma(a, cos, -(b * sin))
        x[..., 1:n_rot:2] = _fma(a, sin, b * cos)
    else:
        a, b = x[..., :half].copy(), x[..., half:n_rot].copy()
        x[..., :half] = _fma(a, cos, -(b * sin))
        x[..., half:n_rot] = _fma(a, sin, b * cos)


# ---- expf, SiLU ---------------------------------------------------------------------------------

def v_expf(x: np.ndarray, width: int = LANES) -> np.ndarray:
    """ggml's vectorised expf, lane by lane: 2^n * (1 + p(b)) with n = round(x / ln 2); the AVX2
    version (``width`` 8) or the AVX-512 one (16: another polynomial form and _mm512_scalef_ps)."""
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        x = x.astype(F32, copy=False)
        return _v_expf_avx512(x) if width == 16 else _v_expf(x)


def _h(hex_float: str) -> np.float32:
    """A float32 constant written as C writes it (0x1.8p23f)."""
    return F32(float.fromhex(hex_float))


def _v_expf(x: np.ndarray) -> np.ndarray:
    r = _h("0x1.8p23")
    z = _fma(x, _h("0x1.715476p+0"), r)
    n = (z - r).astype(F32)
    b = _fma(-n, _h("0x1.7f7d1cp-20"), _fma(-n, _h("0x1.62e4p-1"), x))
    e = (z.view(np.int32) << 23).astype(np.int32)
    k = (e + np.array(F32(1)).view(np.int32)).astype(np.int32).view(F32)
    c = np.abs(n) > F32(126)
    u = (b * b).astype(F32)
    j = _fma(_fma(_fma(_h("0x1.0e4020p-7"), b, _h("0x1.573e2ep-5")), u, _fma(_h("0x1.555e66p-3"), b, _h("0x1.fffdb6p-2"))),
             u, (_h("0x1.ffffecp-1") * b).astype(F32))
    plain = _fma(j, k, k)
    if not c.any():
        return plain
    g = np.where(n <= F32(0), np.int32(-0x7E000000), np.int32(0))          # 0x82000000 as int32
    s1 = (g + np.int32(0x7F000000)).astype(np.int32).view(F32)
    s2 = (e - g).astype(np.int32).view(F32)
    d = np.abs(n) > F32(192)
    big = (_fma(s2, j, s2) * s1).astype(F32)
    return np.where(d, (s1 * s1).astype(F32), np.where(c, big, plain))


def _v_expf_avx512(x: np.ndarray) -> np.ndarray:
    r = _h("0x1.8p23")
    z = _fma(x, _h("0x1.715476p+0"), r)
    n = (z - r).astype(F32)
    b = _fma(-n, _h("0x1.7f7d1cp-20"), _fma(-n, _h("0x1.62e4p-1"), x))
    u = (b * b).astype(F32)
    j = _fma(_fma(_fma(_h("0x1.0e4020p-7"), b, _h("0x1.573e2ep-5")), u, _fma(_h("0x1.555e66p-3"), b, _h("0x1.fffdb6p-2"))),
             u, _fma(_h("0x1.ffffecp-1"), b, F32(1)))
    res = np.ldexp(j, np.where(np.isfinite(n), n, 0).astype(np.int32)).astype(F32)   # _mm512_scalef_ps(j, n)
    d = np.abs(n) > F32(192)
    return np.where(d, np.where(n <= F32(0), F32(0), F32(np.inf)), res).astype(F32)


def swiglu(gate: np.ndarray, up: np.ndarray, out: np.ndarray, threads: int = 1, width: int = LANES) -> None:
    """ggml_vec_swiglu_f32: (x / (1 + v_expf(-x))) * g, every value in the vector path (n % width == 0)."""
    if gate.shape[-1] % width:
        raise UsageError(f"kernels 'ggml': SwiGLU width {gate.shape[-1]} is not a multiple of {width}")
    x = gate.astype(F32, copy=False)
    silu = (x / (F32(1) + v_expf(F32(0) - x, width))).astype(F32)
    out[...] = silu * up.astype(F32)


# ---- attention ----------------------------------------------------------------------------------

def vec_dot_f32(a: np.ndarray, b: np.ndarray, width: int = LANES) -> np.ndarray:
    """ggml_vec_dot_f32 over the last axis (a multiple of 4 * width; a and b broadcast): four
    ``width``-lane accumulators, then (x0+x2)+(x1+x3), then for 8 lanes lanes i+(i+4) and two
    horizontal adds, for 16 lanes _mm512_reduce_add_ps."""
    n, step = a.shape[-1], 4 * width
    if n % step:
        raise UsageError(f"kernels 'ggml': dot length {n} is not a multiple of {step}")
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    acc = np.zeros(shape + (4, width), F32)
    a4 = a.reshape(a.shape[:-1] + (n // step, 4, width))
    b4 = b.reshape(b.shape[:-1] + (n // step, 4, width))
    for i in range(n // step):
        acc = _fma(a4[..., i, :, :], b4[..., i, :, :], acc)
    x = (acc[..., 0:2, :] + acc[..., 2:4, :]).astype(F32)
    x = (x[..., 0, :] + x[..., 1, :]).astype(F32)
    if width == 16:
        return _hsum(x)
    t0 = (x[..., :4] + x[..., 4:]).astype(F32)
    return ((t0[..., 0] + t0[..., 1]) + (t0[..., 2] + t0[..., 3])).astype(F32)


def sgemm_dot_f32(a: np.ndarray, b: np.ndarray, width: int = LANES) -> np.ndarray:
    """A dot product as llamafile's tinyBLAS (llama.cpp's F32 matmul for 2+ columns) computes it
    over the last axis (a multiple of ``width``): one ``width``-lane fused accumulator, then hsum."""
    n = a.shape[-1]
    if n % width:
        raise UsageError(f"kernels 'ggml': dot length {n} is not a multiple of {width}")
    acc = np.zeros(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]) + (width,), F32)
    a8 = a.reshape(a.shape[:-1] + (n // width, width))
    b8 = b.reshape(b.shape[:-1] + (n // width, width))
    for i in range(n // width):
        acc = _fma(a8[..., i, :], b8[..., i, :], acc)
    return _hsum(acc)


def _softmax_rows(s: np.ndarray, width: int = LANES) -> np.ndarray:
    """ggml_vec_soft_max_f32 then the 1/sum scale over the last axis (a multiple of ``width``;
    -inf masked): exp per vector, each vector's hsum added to a float64 sum in order."""
    mx = s.max(axis=-1, keepdims=True)
    e = v_expf((s - mx).astype(F32), width)
    part = _hsum(e.reshape(e.shape[:-1] + (e.shape[-1] // width, width))).astype(F64)
    total = np.zeros(part.shape[:-1], F64)
    for i in range(part.shape[-1]):                                         # float64, in order
        total = total + part[..., i]
    return (e * (1.0 / total).astype(F32)[..., None]).astype(F32)


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int, scale: float,
              out: np.ndarray, threads: int = 1, width: int = LANES) -> None:
    """Causal grouped-query attention as llama.cpp without flash attention: kq = K.q, softmax of
    kq * scale + mask, kqv = V^T.p, over the cache padded with zeros to a multiple of 32 rows."""
    T, Hq, Dh = q.shape
    Hkv = k_cache.shape[0]
    n_kv = pos0 + T
    pad = -(-n_kv // (4 * width)) * (4 * width)
    K = np.zeros((Hkv, pad, Dh), F32)
    V = np.zeros((Hkv, pad, Dh), F32)
    K[:, :n_kv], V[:, :n_kv] = k_cache[:, :n_kv], v_cache[:, :n_kv]
    kv_head = np.arange(Hq) // (Hq // Hkv)
    kq = vec_dot_f32(K[kv_head][None, :, :, :], q.astype(F32)[:, :, None, :], width)   # (T, Hq, pad)
    s = (kq * F32(scale)).astype(F32)
    visible = np.arange(pad)[None, :] <= (pos0 + np.arange(T))[:, None]           # (T, pad)
    s = np.where(visible[:, None, :], s, F32(-np.inf))
    p = _softmax_rows(s, width)                                                      # (T, Hq, pad)
    vt = V[kv_head].transpose(0, 2, 1)                                               # (Hq, Dh, pad)
    dot = sgemm_dot_f32 if T >= 2 else vec_dot_f32      # llamafile's sgemm serves 2+ columns only
    out[...] = dot(vt[None, :, :, :], p[:, :, None, :], width)                      # (T, Hq, Dh)
