// AArch64 NEON dot products (vec_dot.h), baseline ARMv8-A only (no dotprod / i8mm / fp16
// arithmetic): int8 products widen to int16 (vmull_s8 / vmlal_s8), pairs add into int32
// (vpadalq_s16 / vpaddlq_s16). Every block's integer sum equals vec_dot_scalar.cpp's exactly;
// the per-block float scaling and the final sum are float32, as there.
// Compiled only on AArch64; on other targets this file is empty (CMake globs kernels/cpp/*.cpp).
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstring>

#include "block_layout.h"
#include "common.h"
#include "gemm.h"
#include "vec_dot.h"

namespace edgegen {
namespace {

constexpr int kLanes8 = 16;   // int8 / uint8 lanes in a q register
constexpr int kLanesF = 4;    // float32 lanes in a q register
constexpr int kF32Regs = 4;   // float32x4 accumulators in the float dots (16 values a step)

// ---- helpers ------------------------------------------------------------------------------

// IEEE half -> float with the hardware conversion (exact for every finite value).
inline float half_to_float(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// acc + a.b over 16 int8 lanes, any int8 values: each int8*int8 product (|p| <= 16384) fits
// int16 alone, so every product is paired into int32 before anything else is added to it.
inline int32x4_t dot16_any(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

// a.b over 16 int8 lanes as int16x8, for |a| <= 64: two products per int16 lane stay within
// 2 * 64 * 128 = 16384. The caller widens it (vpadalq_s16 / vpaddlq_s16).
inline int16x8_t dot16_small(int8x16_t a, int8x16_t b) {
    return vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
}

// ---- Q8_0 x Q8: 32-value blocks ------------------------------------------------------------
// w block, 34 bytes: d:f16, qs:int8[32] (any int8, -128 included), value = d*qs[j].
float dot_q8_0(const uint8_t* w, const BlockQ8* x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b, w += kQ8_0Bytes) {
        const int8_t* q = reinterpret_cast<const int8_t*>(w + 2);
        int32x4_t s = vdupq_n_s32(0);
        s = dot16_any(s, vld1q_s8(q), vld1q_s8(x[b].qs));
        s = dot16_any(s, vld1q_s8(q + kLanes8), vld1q_s8(x[b].qs + kLanes8));
        acc += half_to_float(load_u16(w)) * x[b].d * static_cast<float>(vaddvq_s32(s));
    }
    return acc;
}

// ---- Q4_0 x Q8: 32-value blocks ------------------------------------------------------------
// w block, 18 bytes: d:f16, qs:u8[16]; value j = d*((qs[j] & 15) - 8), value 16+j = d*((qs[j] >> 4) - 8).
float dot_q4_0(const uint8_t* w, const BlockQ8* x, int64_t n) {
    const uint8x16_t nibble = vdupq_n_u8(kNibbleMask);
    const int8x16_t offset = vdupq_n_s8(kQ4Offset);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b, w += kQ4_0Bytes) {
        const uint8x16_t q = vld1q_u8(w + 2);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, nibble)), offset);  // values 0..15
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, kNibbleBits)), offset);  // 16..31
        int32x4_t s = vpaddlq_s16(dot16_small(lo, vld1q_s8(x[b].qs)));
        s = vpadalq_s16(s, dot16_small(hi, vld1q_s8(x[b].qs + kLanes8)));
        acc += half_to_float(load_u16(w)) * x[b].d * static_cast<float>(vaddvq_s32(s));
    }
    return acc;
}

// ---- Q4_1 x Q8: 32-value blocks ------------------------------------------------------------
// w block, 20 bytes: d:f16, m:f16, qs:u8[16]; value j = d*(qs[j] & 15) + m, value 16+j =
// d*(qs[j] >> 4) + m. Per block: d*dx * sum(nibble*q) + m*dx * sum(q) (BlockQ8::sum).
float dot_q4_1(const uint8_t* w, const BlockQ8* x, int64_t n) {
    const uint8x16_t nibble = vdupq_n_u8(kNibbleMask);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b, w += kQ4_1Bytes) {
        const uint8x16_t q = vld1q_u8(w + 4);
        const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, nibble));              // values 0..15, 0..15
        const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, kNibbleBits));      // values 16..31
        int32x4_t s = vpaddlq_s16(dot16_small(lo, vld1q_s8(x[b].qs)));
        s = vpadalq_s16(s, dot16_small(hi, vld1q_s8(x[b].qs + kLanes8)));
        // two adds, not a*b + c*d (contraction may fuse either product): scalar and NEON agree bit for bit
        acc += half_to_float(load_u16(w)) * x[b].d * static_cast<float>(vaddvq_s32(s));
        acc += half_to_float(load_u16(w + 2)) * x[b].d * static_cast<float>(x[b].sum);
    }
    return acc;
}

// ---- Q4_K x Q8K: 256-value super-blocks ----------------------------------------------------
// w block, 144 bytes: d:f16, dmin:f16, scales:u8[12] (eight 6-bit scale/min pairs, unpacked by
// q4_k_unpack), qs:u8[128]. Chunk c (64 values) reads qs[32c .. 32c+32): low nibbles are
// sub-block 2c, high nibbles sub-block 2c+1; value = d*sc[s]*nibble - dmin*m[s].
// Per super-block: d*dx * sum_s sc[s]*sum(nibble*q over s)  -  dmin*dx * sum_s m[s]*sum(q over s),
// the second sum from the activation's bsums (two 16-value groups per sub-block).
float dot_q4_k(const uint8_t* w, const BlockQ8K* x, int64_t n) {
    const uint8x16_t nibble = vdupq_n_u8(kNibbleMask);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK_K; ++b, w += kQ4_KBytes) {
        const BlockQ8K& xb = x[b];
        uint8_t sc[kQ4_KSubBlocks], mn[kQ4_KSubBlocks];
        q4_k_unpack(w + kQ4_KScalesOff, sc, mn);

        // 1. sum_s m[s] * (bsums[2s] + bsums[2s+1]); pair sums are within 32*128 (int16)
        const int16x8_t pair_sums = vpaddq_s16(vld1q_s16(xb.bsums), vld1q_s16(xb.bsums + 8));
        const int16x8_t mv = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
        const int32x4_t mprod = vmlal_high_s16(vmull_s16(vget_low_s16(mv), vget_low_s16(pair_sums)), mv, pair_sums);
        const int summ = vaddvq_s32(mprod);

        // 2. sum_s sc[s] * sum(nibble * q over s); nibble*q summed over 32 values needs int32
        int32x4_t sumi = vdupq_n_s32(0);
        for (int64_t c = 0; c < kQK_K / kQ4_KChunk; ++c) {
            const uint8_t* q = w + kQ4_KQsOff + c * (kQ4_KChunk / 2);
            const int8_t* xl = xb.qs + c * kQ4_KChunk;   // sub-block 2c
            const int8_t* xh = xl + kQ4_KChunk / 2;      // sub-block 2c+1
            const uint8x16_t q0 = vld1q_u8(q), q1 = vld1q_u8(q + kLanes8);
            int32x4_t sl = vpaddlq_s16(dot16_small(vreinterpretq_s8_u8(vandq_u8(q0, nibble)), vld1q_s8(xl)));
            sl = vpadalq_s16(sl, dot16_small(vreinterpretq_s8_u8(vandq_u8(q1, nibble)), vld1q_s8(xl + kLanes8)));
            int32x4_t sh = vpaddlq_s16(dot16_small(vreinterpretq_s8_u8(vshrq_n_u8(q0, kNibbleBits)), vld1q_s8(xh)));
            sh = vpadalq_s16(sh, dot16_small(vreinterpretq_s8_u8(vshrq_n_u8(q1, kNibbleBits)), vld1q_s8(xh + kLanes8)));
            sumi = vmlaq_n_s32(sumi, sl, sc[2 * c]);
            sumi = vmlaq_n_s32(sumi, sh, sc[2 * c + 1]);
        }

        const float d = half_to_float(load_u16(w)) * xb.d;
        const float dmin = half_to_float(load_u16(w + 2)) * xb.d;
        acc += d * static_cast<float>(vaddvq_s32(sumi)) - dmin * static_cast<float>(summ);
    }
    return acc;
}

// ---- Q6_K x Q8K: 256-value super-blocks ----------------------------------------------------
// w block, 210 bytes: ql:u8[128], qh:u8[64], scales:int8[16], d:f16; value v = d*scales[v/16]*(q6-32).
// Half h (128 values) uses ql[64h ..+64] and qh[32h ..+32]. Its quarter g (32 values, l < 32):
// low 4 bits from ql[64h + 32(g%2) + l] (low nibble for g < 2, high for g >= 2), top 2 bits
// from bits 2g..2g+1 of qh[32h + l]. Each 16-value group has its own scale.
inline int8x16_t q6_centered(uint8x16_t low4, uint8x16_t top2_at_bit4) {
    return vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low4, top2_at_bit4)), vdupq_n_s8(kQ6Offset));
}

float dot_q6_k(const uint8_t* w, const BlockQ8K* x, int64_t n) {
    const uint8x16_t nibble = vdupq_n_u8(kNibbleMask);
    const uint8x16_t top2 = vdupq_n_u8(kTwoBitMask << kNibbleBits);  // bits 4..5
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK_K; ++b, w += kQ6_KBytes) {
        const int8_t* scales = reinterpret_cast<const int8_t*>(w + kQ6_KScalesOff);
        const int8_t* xq = x[b].qs;
        int32x4_t sumi = vdupq_n_s32(0);
        for (int64_t h = 0; h < kQK_K / kQ6_KHalf; ++h) {
            const uint8_t* ql = w + h * (kQ6_KHalf / 2);
            const uint8_t* qh = w + kQ6_KQhOff + h * (kQ6_KHalf / 4);
            const int8_t* xh = xq + h * kQ6_KHalf;
            const int8_t* sh = scales + h * (kQ6_KHalf / 16);
            for (int k = 0; k < kQ6_KRun / kLanes8; ++k) {
                // lanes l = 16k .. 16k+15 of every quarter: 16-value group 2g+k of this half
                const uint8x16_t a = vld1q_u8(ql + k * kLanes8);              // quarters 0, 2
                const uint8x16_t c = vld1q_u8(ql + kQ6_KRun + k * kLanes8);   // quarters 1, 3
                const uint8x16_t hb = vld1q_u8(qh + k * kLanes8);
                const int8x16_t q[4] = {
                    q6_centered(vandq_u8(a, nibble), vandq_u8(vshlq_n_u8(hb, 4), top2)),  // qh bits 0..1
                    q6_centered(vandq_u8(c, nibble), vandq_u8(vshlq_n_u8(hb, 2), top2)),  // bits 2..3
                    q6_centered(vshrq_n_u8(a, kNibbleBits), vandq_u8(hb, top2)),         // bits 4..5
                    q6_centered(vshrq_n_u8(c, kNibbleBits), vandq_u8(vshrq_n_u8(hb, 2), top2)),  // 6..7
                };
                for (int g = 0; g < 4; ++g) {
                    const int8x16_t xv = vld1q_s8(xh + g * kQ6_KRun + k * kLanes8);
                    sumi = vmlaq_n_s32(sumi, vpaddlq_s16(dot16_small(q[g], xv)), sh[2 * g + k]);
                }
            }
        }
        acc += half_to_float(load_u16(w + kQ6_KDOff)) * x[b].d * static_cast<float>(vaddvq_s32(sumi));
    }
    return acc;
}

// ---- float rows x float32 -----------------------------------------------------------------
// Weights are read as bytes (no alignment assumed) and widened to float32; kF32Regs
// accumulators of 4 lanes, a scalar tail for the last n % 16 values.

inline float32x4_t load_f32(const uint8_t* p) { return vreinterpretq_f32_u8(vld1q_u8(p)); }

inline float sum_accumulators(const float32x4_t* acc) {
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[2]), vaddq_f32(acc[1], acc[3])));
}

// w: float32[n]
float dot_f32(const uint8_t* w, const float* x, int64_t n) {
    static_assert(kF32Regs == 4, "sum_accumulators names 4 registers");
    float32x4_t acc[kF32Regs] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    constexpr int64_t kStep = kF32Regs * kLanesF;
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        for (int r = 0; r < kF32Regs; ++r) {
            const int64_t k = i + r * kLanesF;
            acc[r] = vfmaq_f32(acc[r], load_f32(w + k * sizeof(float)), vld1q_f32(x + k));
        }
    }
    float tail = 0.0f;
    for (; i < n; ++i) {
        float wv;
        std::memcpy(&wv, w + i * sizeof(float), sizeof wv);
        tail += wv * x[i];
    }
    return sum_accumulators(acc) + tail;
}

// 8 halves (16 bytes) -> two float32x4, low lanes first.
inline float32x4_t f16_lo(uint8x16_t v) { return vcvt_f32_f16(vget_low_f16(vreinterpretq_f16_u8(v))); }
inline float32x4_t f16_hi(uint8x16_t v) { return vcvt_high_f32_f16(vreinterpretq_f16_u8(v)); }
// bfloat16 is the top half of a float32: shift each 16-bit lane into the high half.
inline float32x4_t bf16_lo(uint8x16_t v) {
    return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(vreinterpretq_u16_u8(v)), 16));
}
inline float32x4_t bf16_hi(uint8x16_t v) { return vreinterpretq_f32_u32(vshll_high_n_u16(vreinterpretq_u16_u8(v), 16)); }

// w: 16-bit floats[n] (IEEE half or bfloat16, by the widening pair Lo/Hi and scalar Half)
template <float32x4_t (*Lo)(uint8x16_t), float32x4_t (*Hi)(uint8x16_t), float (*Half)(uint16_t)>
float dot_half(const uint8_t* w, const float* x, int64_t n) {
    static_assert(kF32Regs == 4, "the loop below fills 4 registers from 2 loads");
    float32x4_t acc[kF32Regs] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    constexpr int64_t kStep = kF32Regs * kLanesF;
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        const uint8x16_t h0 = vld1q_u8(w + 2 * i), h1 = vld1q_u8(w + 2 * i + kLanes8);
        acc[0] = vfmaq_f32(acc[0], Lo(h0), vld1q_f32(x + i));
        acc[1] = vfmaq_f32(acc[1], Hi(h0), vld1q_f32(x + i + kLanesF));
        acc[2] = vfmaq_f32(acc[2], Lo(h1), vld1q_f32(x + i + 2 * kLanesF));
        acc[3] = vfmaq_f32(acc[3], Hi(h1), vld1q_f32(x + i + 3 * kLanesF));
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += Half(load_u16(w + 2 * i)) * x[i];
    return sum_accumulators(acc) + tail;
}

}  // namespace

const DotTable kDotNeon = {
    Isa::kNeon, "neon", dot_q8_0, dot_q4_0, dot_q4_k, dot_q6_k, dot_f32,
    dot_half<f16_lo, f16_hi, half_to_float>, dot_half<bf16_lo, bf16_hi, bf16_to_f32>,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,  // no int8 prompt tiles yet
    gemm_tile_scalar, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,  // the portable GEMM tile, vectorised by the compiler for NEON
    dot_q4_1, nullptr, nullptr,
};

}  // namespace edgegen

#endif  // defined(__aarch64__)
