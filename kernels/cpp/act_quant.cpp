// 8-bit quantization of activations (see act_quant.h); the NumPy twin is ref.quantize_act_ref.
#include "act_quant.h"

#include <cmath>
#include <cstring>

#include "common.h"

namespace edgegen {
namespace {

constexpr float kQ8Max = 127.0f;
// Adding then subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, half
// to even (the default rounding mode), exactly as nearbyint does there, in two vectorisable
// additions instead of a library call per value.
constexpr float kRoundMagic = 12582912.0f;

// q[i] = round_half_even(x[i] * 127 / max|x|), returns the scale max|x| / 127 (0 for all zeros).
float quantize_run(const float* x, int8_t* q, int64_t n) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        const float a = std::fabs(x[i]);
        amax = a > amax ? a : amax;  // a comparison, not fmaxf: it vectorises (a NaN is skipped either way)
    }
    const float id = amax > 0.0f ? kQ8Max / amax : 0.0f;
    // The clamp changes nothing for finite x; it keeps the int8 cast defined when amax is
    // subnormal (id overflows to inf) or x holds inf / NaN (a NaN becomes -127).
    for (int64_t i = 0; i < n; ++i) {
        float v = x[i] * id;
        v = !(v >= -kQ8Max) ? -kQ8Max : (v > kQ8Max ? kQ8Max : v);
        q[i] = static_cast<int8_t>((v + kRoundMagic) - kRoundMagic);
    }
    return amax / kQ8Max;
}

}  // namespace

void quantize_q8(const float* x, BlockQ8* out, int64_t n) {
    for (int64_t b = 0; b < n / kQ8Values; ++b) {
        BlockQ8& blk = out[b];
        blk.d = f16_to_f32(f32_to_f16(quantize_run(x + b * kQ8Values, blk.qs, kQ8Values)));
        int sum = 0;
        for (int64_t i = 0; i < kQ8Values; ++i) sum += blk.qs[i];
        blk.sum = sum;
    }
}

void pair_q8(const BlockQ8* blocks, BlockQ8Pair* out, int64_t nblocks) {
    constexpr int64_t kHalf = kQ8Values / 2, kLanesPerBlock = 4;
    for (int64_t p = 0; p < nblocks / 2; ++p) {
        BlockQ8Pair& pair = out[p];
        for (int64_t j = 0; j < 2; ++j) {
            const BlockQ8& b = blocks[2 * p + j];
            std::memcpy(pair.lo + j * kHalf, b.qs, kHalf);
            std::memcpy(pair.hi + j * kHalf, b.qs + kHalf, kHalf);
            for (int64_t l = 0; l < kLanesPerBlock; ++l) {
                pair.d[j * kLanesPerBlock + l] = b.d;
                pair.sum2[j * kLanesPerBlock + l] = 2 * b.sum;
            }
            pair.dsum[2 * j] = 0.0f;
            pair.dsum[2 * j + 1] = b.d * static_cast<float>(b.sum);
        }
    }
}

void quantize_q8k(const float* x, BlockQ8K* out, int64_t n) {
    for (int64_t b = 0; b < n / kQ8KValues; ++b) {
        BlockQ8K& blk = out[b];
        blk.d = quantize_run(x + b * kQ8KValues, blk.qs, kQ8KValues);
        constexpr int64_t kGroup = kQ8KValues / kQ8KGroups;
        for (int64_t g = 0; g < kQ8KGroups; ++g) {
            int sum = 0;
            for (int64_t i = 0; i < kGroup; ++i) sum += blk.qs[g * kGroup + i];
            blk.bsums[g] = static_cast<int16_t>(sum);
        }
    }
}

}  // namespace edgegen
