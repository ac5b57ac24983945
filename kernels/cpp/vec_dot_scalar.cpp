// Portable dot products (vec_dot.h): integer sums per block, one float scale per block. The
// SIMD tables compute the same sums with wider instructions; this is their test twin and the
// path for CPUs without them.
#include <cstring>

#include "block_layout.h"
#include "common.h"
#include "gemm.h"
#include "vec_dot.h"

namespace edgegen {
namespace {

float dot_q8_0(const uint8_t* w, const BlockQ8* x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b, w += kQ8_0Bytes) {
        const int8_t* q = reinterpret_cast<const int8_t*>(w + 2);
        int sum = 0;
        for (int64_t j = 0; j < kQK; ++j) sum += q[j] * x[b].qs[j];
        acc += f16_to_f32(load_u16(w)) * x[b].d * static_cast<float>(sum);
    }
    return acc;
}

// sum_j (nibble_j - offset) * xq[j] over one 32-value block (low nibbles are values 0..15).
int nibble_dot(const uint8_t* q, const int8_t* xq, int offset) {
    int sum = 0;
    for (int64_t j = 0; j < kQK / 2; ++j) {
        sum += ((q[j] & kNibbleMask) - offset) * xq[j];
        sum += ((q[j] >> kNibbleBits) - offset) * xq[j + kQK / 2];
    }
    return sum;
}

float dot_q4_0(const uint8_t* w, const BlockQ8* x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b, w += kQ4_0Bytes) {
        const int sum = nibble_dot(w + 2, x[b].qs, kQ4Offset);
        acc += f16_to_f32(load_u16(w)) * x[b].d * static_cast<float>(sum);
    }
    return acc;
}

// Per block: d*dx * sum(nibble * q) + m*dx * sum(q), the nibbles unsigned (0..15).
float dot_q4_1(const uint8_t* w, const BlockQ8* x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b, w += kQ4_1Bytes) {
        const int sum = nibble_dot(w + 4, x[b].qs, 0);
        // two adds, not a*b + c*d (contraction may fuse either product): scalar and NEON agree bit for bit
        acc += f16_to_f32(load_u16(w)) * x[b].d * static_cast<float>(sum);
        acc += f16_to_f32(load_u16(w + 2)) * x[b].d * static_cast<float>(x[b].sum);
    }
    return acc;
}

// Per super-block: d*dx * sum_s sc[s] * sum(q*x over s)  -  dmin*dx * sum_s m[s] * sum(x over s).
float dot_q4_k(const uint8_t* w, const BlockQ8K* x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK_K; ++b, w += kQ4_KBytes) {
        const BlockQ8K& xb = x[b];
        uint8_t sc[kQ4_KSubBlocks], mn[kQ4_KSubBlocks];
        q4_k_unpack(w + kQ4_KScalesOff, sc, mn);
        int sumi = 0, summ = 0;
        for (int64_t c = 0; c < kQK_K / kQ4_KChunk; ++c) {
            const uint8_t* q = w + kQ4_KQsOff + c * (kQ4_KChunk / 2);
            const int8_t* xl = xb.qs + c * kQ4_KChunk;
            const int8_t* xh = xl + kQ4_KChunk / 2;
            int sl = 0, sh = 0;
            for (int64_t l = 0; l < kQ4_KChunk / 2; ++l) {
                sl += (q[l] & kNibbleMask) * xl[l];
                sh += (q[l] >> kNibbleBits) * xh[l];
            }
            sumi += sc[2 * c] * sl + sc[2 * c + 1] * sh;
            // bsums cover 16 values: sub-block s (32 values) is groups 2s and 2s+1
            summ += mn[2 * c] * (xb.bsums[4 * c] + xb.bsums[4 * c + 1]) +
                    mn[2 * c + 1] * (xb.bsums[4 * c + 2] + xb.bsums[4 * c + 3]);
        }
        const float d = f16_to_f32(load_u16(w)) * xb.d;
        const float dmin = f16_to_f32(load_u16(w + 2)) * xb.d;
        acc += d * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
    }
    return acc;
}

// Per super-block: d*dx * sum_g scales[g] * (sum(q6*x over g) - 32 * sum(x over g)), g = 16 values.
float dot_q6_k(const uint8_t* w, const BlockQ8K* x, int64_t n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK_K; ++b, w += kQ6_KBytes) {
        const BlockQ8K& xb = x[b];
        const int8_t* scales = reinterpret_cast<const int8_t*>(w + kQ6_KScalesOff);
        int group_sum[kQ6_KScales] = {};
        for (int64_t h = 0; h < kQK_K / kQ6_KHalf; ++h) {
            const uint8_t* ql = w + h * (kQ6_KHalf / 2);
            const uint8_t* qh = w + kQ6_KQhOff + h * (kQ6_KHalf / 4);
            for (int64_t g = 0; g < kQ6_KHalf / kQ6_KRun; ++g) {
                const uint8_t* lo = ql + (g % 2) * kQ6_KRun;
                const int lo_shift = static_cast<int>(g / 2) * kNibbleBits;
                const int hi_shift = static_cast<int>(2 * g);
                const int64_t v0 = h * kQ6_KHalf + g * kQ6_KRun;
                for (int64_t l = 0; l < kQ6_KRun; ++l) {
                    const int q6 = ((lo[l] >> lo_shift) & kNibbleMask) | (((qh[l] >> hi_shift) & kTwoBitMask) << kNibbleBits);
                    group_sum[(v0 + l) / 16] += q6 * xb.qs[v0 + l];
                }
            }
        }
        int sumi = 0;
        for (int64_t g = 0; g < kQ6_KScales; ++g) sumi += scales[g] * (group_sum[g] - kQ6Offset * xb.bsums[g]);
        acc += f16_to_f32(load_u16(w + kQ6_KDOff)) * xb.d * static_cast<float>(sumi);
    }
    return acc;
}

float dot_f32(const uint8_t* w, const float* x, int64_t n) {
    float acc[kDotLanes] = {};
    int64_t i = 0;
    for (; i + kDotLanes <= n; i += kDotLanes) {
        float wv[kDotLanes];
        std::memcpy(wv, w + i * sizeof(float), sizeof wv);
        for (int j = 0; j < kDotLanes; ++j) acc[j] += wv[j] * x[i + j];
    }
    float tail = 0.0f;
    for (; i < n; ++i) {
        float wv;
        std::memcpy(&wv, w + i * sizeof(float), sizeof wv);
        tail += wv * x[i];
    }
    return combine_lanes(acc) + tail;
}

template <float (*Half)(uint16_t)>
float dot_half(const uint8_t* w, const float* x, int64_t n) {
    float acc[kDotLanes] = {};
    int64_t i = 0;
    for (; i + kDotLanes <= n; i += kDotLanes) {
        for (int j = 0; j < kDotLanes; ++j) acc[j] += Half(load_u16(w + 2 * (i + j))) * x[i + j];
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += Half(load_u16(w + 2 * i)) * x[i];
    return combine_lanes(acc) + tail;
}

}  // namespace

// The portable prompt-GEMM tile (gemm.h); the NEON table uses it too, vectorised by the compiler.
void gemm_tile_scalar(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c) {
    for (int r = 0; r < kGemmRows; ++r) {
        float acc[kGemmTokens];
        for (int t = 0; t < kGemmTokens; ++t) acc[t] = c[r * kGemmTokens + t];
        for (int64_t k = 0; k < kc; ++k) {
            const float wv = w[r * w_stride + k];
            for (int t = 0; t < kGemmTokens; ++t) acc[t] += wv * xt[k * kGemmTokens + t];
        }
        for (int t = 0; t < kGemmTokens; ++t) c[r * kGemmTokens + t] = acc[t];
    }
}

const DotTable kDotScalar = {
    Isa::kScalar, "scalar", dot_q8_0, dot_q4_0, dot_q4_k, dot_q6_k, dot_f32, dot_half<f16_to_f32>, dot_half<bf16_to_f32>,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
    gemm_tile_scalar, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
    dot_q4_1, nullptr, nullptr,
};

}  // namespace edgegen
