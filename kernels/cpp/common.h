// Scalar helpers shared by every kernel family: little-endian loads, half-precision
// decoding and the lane-blocked dot product. A later SIMD dispatch replaces `dot` and
// the block decoders per CPU; these stay as the portable scalar path.
#pragma once

#include <cstdint>
#include <cmath>
#include <cstring>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "edgegen kernels read GGUF data (little endian) in place; big-endian hosts are unsupported"
#endif

namespace edgegen {

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline float bits_to_f32(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// IEEE binary16 layout: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
constexpr uint32_t kF16SignMask = 0x8000u;
constexpr uint32_t kF16ExpMantMask = 0x7FFFu;
constexpr int kF16MantBits = 10;
constexpr uint32_t kF16ExpAllOnes = 0x1Fu;
constexpr int kF32MantBits = 23;
constexpr uint32_t kF16ToF32Rebias = 127 - 15;         // normal numbers: exponent 15 -> 127 bias
constexpr uint32_t kF16ToF32InfRebias = 255 - 31;      // inf / NaN: all-ones -> all-ones
constexpr float kF16SubnormalUnit = 0x1p-24f;          // value of mantissa LSB when exponent == 0

// binary16 -> binary32, exact for every bit pattern (signed zeros, subnormals, inf, NaN payloads).
inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & kF16SignMask) << 16;
    const uint32_t exp_mant = h & kF16ExpMantMask;
    const uint32_t exp = exp_mant >> kF16MantBits;
    uint32_t bits;
    if (exp == 0) {
        // zero or subnormal: mantissa * 2^-24; the int -> float conversion and the power-of-two
        // product are both exact.
        const float v = static_cast<float>(exp_mant) * kF16SubnormalUnit;
        std::memcpy(&bits, &v, sizeof bits);
    } else {
        const uint32_t rebias = exp == kF16ExpAllOnes ? kF16ToF32InfRebias : kF16ToF32Rebias;
        bits = (exp_mant << (kF32MantBits - kF16MantBits)) + (rebias << kF32MantBits);
    }
    return bits_to_f32(bits | sign);
}

// binary32 -> binary16, rounded to nearest, ties to even; overflow gives inf, NaN stays NaN.
inline uint16_t f32_to_f16(float f) {
    constexpr uint32_t kAbsMask = 0x7FFFFFFFu, kF32Inf = 0x7F800000u;
    constexpr uint32_t kF16Inf = 0x7C00u, kF16QuietNaN = 0x7E00u;
    constexpr uint32_t kF16Overflow = 0x477FF000u;    // 65520: the first value rounding to inf
    constexpr uint32_t kF16MinNormal = 0x38800000u;   // 2^-14
    constexpr int kDropBits = kF32MantBits - kF16MantBits;
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const auto sign = static_cast<uint16_t>((x >> 16) & kF16SignMask);
    x &= kAbsMask;
    if (x >= kF32Inf) return sign | (x > kF32Inf ? kF16QuietNaN : kF16Inf);
    if (x >= kF16Overflow) return sign | kF16Inf;
    if (x < kF16MinNormal) {
        // subnormal half: a whole number of 2^-24 units (scaling by 2^24 is exact; 1024 units
        // is the smallest normal, which the bit pattern 0x0400 also means)
        return sign | static_cast<uint16_t>(std::nearbyint(bits_to_f32(x) * (1.0f / kF16SubnormalUnit)));
    }
    // normal half: rebias the exponent, then round off the low mantissa bits (ties to even); a
    // carry out of the mantissa correctly bumps the exponent
    const uint32_t rebiased = x - (kF16ToF32Rebias << kF32MantBits);
    const uint32_t rounded = rebiased + ((1u << (kDropBits - 1)) - 1) + ((rebiased >> kDropBits) & 1u);
    return sign | static_cast<uint16_t>(rounded >> kDropBits);
}

// bfloat16 is the high half of a binary32.
inline float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

// Threads worth starting for `work` elementwise operations: waking a second thread costs a few
// microseconds, as much as a few tens of thousands of multiply-adds, so a decode step's norms and
// gates (a few thousand values) run on the calling thread alone.
constexpr int64_t kWorkPerThread = 32768;

inline int team_for(int64_t work, int threads) {
    const int64_t useful = work / kWorkPerThread + 1;
    return static_cast<int>(useful < threads ? useful : threads);
}

// Per-thread scratch regions are padded to whole cache lines plus one, so that two threads
// never write the same line (false sharing would serialise their accumulators).
constexpr int64_t kCacheLineBytes = 64;

template <class T>
constexpr int64_t padded_count(int64_t n) {
    constexpr int64_t per_line = kCacheLineBytes / static_cast<int64_t>(sizeof(T));
    return (n + per_line - 1) / per_line * per_line + per_line;
}

// Dot product in float32 with kDotLanes independent partial sums combined in a fixed order:
// the compiler vectorises the lane loop without -ffast-math, and the result depends only on
// the values (not on pointer alignment, the caller's batch size or the thread).
constexpr int kDotLanes = 8;

// The fixed-order sum of kDotLanes partial sums.
inline float combine_lanes(const float* lane) {
    static_assert(kDotLanes == 8, "the combine below names 8 lanes");
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

inline float dot(const float* a, const float* b, int64_t n) {
    float lane[kDotLanes] = {};
    int64_t i = 0;
    for (; i + kDotLanes <= n; i += kDotLanes) {
        for (int j = 0; j < kDotLanes; ++j) lane[j] += a[i + j] * b[i + j];
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += a[i] * b[i];
    return combine_lanes(lane) + tail;
}

}  // namespace edgegen
