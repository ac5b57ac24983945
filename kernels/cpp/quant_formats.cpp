// Block decoders, one per GGML tensor type; the single source of the value of every weight
// (get_rows writes them out, matmul dots them against activations).

// Bit-exactness with kernels/quants.py needs every product rounded before the following add.
#include "fp_contract_off.h"
#include "quant_formats.h"

#include <cstring>
#include <string>

#include "block_layout.h"
#include "common.h"

namespace edgegen {
namespace {

// ---- float types --------------------------------------------------------------------------

void decode_f32(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void decode_f16(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
}

void decode_bf16(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src + 2 * i));
}

// ---- 32-value blocks ----------------------------------------------------------------------

void decode_q8_0(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK; ++b, src += kQ8_0Bytes, dst += kQK) {
        const float d = f16_to_f32(load_u16(src));
        const int8_t* qs = reinterpret_cast<const int8_t*>(src + 2);
        for (int64_t j = 0; j < kQK; ++j) dst[j] = d * static_cast<float>(qs[j]);
    }
}

void decode_q4_0(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK; ++b, src += kQ4_0Bytes, dst += kQK) {
        const float d = f16_to_f32(load_u16(src));
        const uint8_t* qs = src + 2;
        for (int64_t j = 0; j < kQK / 2; ++j) {  // low nibbles: values 0..15, high: 16..31
            dst[j] = d * static_cast<float>((qs[j] & kNibbleMask) - kQ4Offset);
            dst[j + kQK / 2] = d * static_cast<float>((qs[j] >> kNibbleBits) - kQ4Offset);
        }
    }
}

void decode_q4_1(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK; ++b, src += kQ4_1Bytes, dst += kQK) {
        const float d = f16_to_f32(load_u16(src));
        const float m = f16_to_f32(load_u16(src + 2));
        const uint8_t* qs = src + 4;
        for (int64_t j = 0; j < kQK / 2; ++j) {
            dst[j] = d * static_cast<float>(qs[j] & kNibbleMask) + m;
            dst[j + kQK / 2] = d * static_cast<float>(qs[j] >> kNibbleBits) + m;
        }
    }
}

// ---- K-quants (256-value super-blocks) ----------------------------------------------------

void decode_q4_k(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ4_KBytes, dst += kQK_K) {
        const float d = f16_to_f32(load_u16(src));
        const float dmin = f16_to_f32(load_u16(src + 2));
        uint8_t sc[kQ4_KSubBlocks], mn[kQ4_KSubBlocks];
        q4_k_unpack(src + kQ4_KScalesOff, sc, mn);
        for (int64_t c = 0; c < kQK_K / kQ4_KChunk; ++c) {
            // chunk c: sub-block 2c in the low nibbles, 2c+1 in the high nibbles of 32 bytes
            const float scale_lo = d * static_cast<float>(sc[2 * c]), offset_lo = dmin * static_cast<float>(mn[2 * c]);
            const float scale_hi = d * static_cast<float>(sc[2 * c + 1]), offset_hi = dmin * static_cast<float>(mn[2 * c + 1]);
            const uint8_t* qs = src + kQ4_KQsOff + c * (kQ4_KChunk / 2);
            float* y = dst + c * kQ4_KChunk;
            for (int64_t l = 0; l < kQ4_KChunk / 2; ++l) {
                y[l] = scale_lo * static_cast<float>(qs[l] & kNibbleMask) - offset_lo;
                y[l + kQ4_KChunk / 2] = scale_hi * static_cast<float>(qs[l] >> kNibbleBits) - offset_hi;
            }
        }
    }
}

void decode_q6_k(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ6_KBytes, dst += kQK_K) {
        const float d = f16_to_f32(load_u16(src + kQ6_KDOff));
        const int8_t* sc = reinterpret_cast<const int8_t*>(src + kQ6_KScalesOff);
        float dsc[kQ6_KScales];
        for (int64_t i = 0; i < kQ6_KScales; ++i) dsc[i] = d * static_cast<float>(sc[i]);
        for (int64_t h = 0; h < kQK_K / kQ6_KHalf; ++h) {
            // each half: 64 ql bytes (low 4 bits of 128 values), 32 qh bytes (high 2 bits)
            const uint8_t* ql = src + h * (kQ6_KHalf / 2);
            const uint8_t* qh = src + kQ6_KQhOff + h * (kQ6_KHalf / 4);
            const float* s = dsc + h * (kQ6_KHalf / 16);
            float* y = dst + h * kQ6_KHalf;
            for (int64_t g = 0; g < kQ6_KHalf / kQ6_KRun; ++g) {
                // quarter g: low 4 bits from the low (g < 2) or high nibbles of ql[32*(g%2) ..],
                // high 2 bits from bits 2g..2g+1 of qh; one scale per 16 values
                const uint8_t* lo = ql + (g % 2) * kQ6_KRun;
                const int lo_shift = static_cast<int>(g / 2) * kNibbleBits;
                const int hi_shift = static_cast<int>(2 * g);
                const float* sg = s + 2 * g;
                float* yg = y + g * kQ6_KRun;
                for (int64_t l = 0; l < kQ6_KRun; ++l) {
                    const int low4 = (lo[l] >> lo_shift) & kNibbleMask;
                    const int high2 = (qh[l] >> hi_shift) & kTwoBitMask;
                    const int q = (low4 | (high2 << kNibbleBits)) - kQ6Offset;
                    yg[l] = sg[l / 16] * static_cast<float>(q);
                }
            }
        }
    }
}

// One explicit table; GGMLType values and geometry as in gguf.GGML_QUANT_SIZES.
constexpr QuantFormat kFormats[] = {
    {kF32, "F32", 1, 4, decode_f32},
    {kF16, "F16", 1, 2, decode_f16},
    {kBF16, "BF16", 1, 2, decode_bf16},
    {kQ8_0, "Q8_0", kQK, kQ8_0Bytes, decode_q8_0},
    {kQ4_0, "Q4_0", kQK, kQ4_0Bytes, decode_q4_0},
    {kQ4_1, "Q4_1", kQK, kQ4_1Bytes, decode_q4_1},
    {kQ4_K, "Q4_K", kQK_K, kQ4_KBytes, decode_q4_k},
    {kQ6_K, "Q6_K", kQK_K, kQ6_KBytes, decode_q6_k},
};

}  // namespace

const QuantFormat* find_format(int qtype) {
    for (const QuantFormat& f : kFormats) {
        if (f.qtype == qtype) return &f;
    }
    return nullptr;
}

std::string supported_formats() {
    std::string names;
    for (const QuantFormat& f : kFormats) {
        names += (names.empty() ? "" : ", ") + std::string(f.name) + "(" + std::to_string(f.qtype) + ")";
    }
    return names;
}

}  // namespace edgegen
