// AVX2 + FMA + F16C pieces of the prompt GEMM (gemm.h): the register tile and the decoders of
// the formats whose portable decoders are slowest. Built with -mavx2 -mfma -mf16c for this file
// only; includes no header with external-linkage inline functions (see vec_dot_avx2.cpp).
#if defined(__x86_64__) || defined(_M_X64)

// The decoders must round d * q (and d * q - m) as quant_formats.cpp does.
#include "fp_contract_off.h"

#include <immintrin.h>

#include "block_layout.h"
#include "gemm.h"
#include "half_avx2.h"

namespace edgegen {
namespace {

// dst[0..32) = scale * float(q[i]) (- offset): 32 signed bytes widened 8 at a time
inline void store_scaled(__m256i q, __m256 scale, float* dst) {
    const __m128i halves[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
    for (int h = 0; h < 2; ++h) {
        _mm256_storeu_ps(dst + 16 * h, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(halves[h]))));
        _mm256_storeu_ps(dst + 16 * h + 8, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(
                                                                   _mm256_cvtepi8_epi32(_mm_srli_si128(halves[h], 8)))));
    }
}

inline void store_scaled_offset(__m256i q, __m256 scale, __m256 offset, float* dst) {
    store_scaled(q, scale, dst);
    for (int i = 0; i < 32; i += 8) _mm256_storeu_ps(dst + i, _mm256_sub_ps(_mm256_loadu_ps(dst + i), offset));
}

}  // namespace

// 6 rows x 16 tokens = 12 accumulators; per k: two token vectors loaded, each row's weight
// broadcast once and multiplied into both (12 FMAs against 8 loads).
void gemm_tile_avx2(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c) {
    static_assert(kGemmRows == 6 && kGemmTokens == 16, "the tile is written out for 6 x 16");
    const float* w0 = w;
    const float* w1 = w + w_stride;
    const float* w2 = w + 2 * w_stride;
    const float* w3 = w + 3 * w_stride;
    const float* w4 = w + 4 * w_stride;
    const float* w5 = w + 5 * w_stride;
    __m256 a00 = _mm256_loadu_ps(c + 0), a01 = _mm256_loadu_ps(c + 8);
    __m256 a10 = _mm256_loadu_ps(c + 16), a11 = _mm256_loadu_ps(c + 24);
    __m256 a20 = _mm256_loadu_ps(c + 32), a21 = _mm256_loadu_ps(c + 40);
    __m256 a30 = _mm256_loadu_ps(c + 48), a31 = _mm256_loadu_ps(c + 56);
    __m256 a40 = _mm256_loadu_ps(c + 64), a41 = _mm256_loadu_ps(c + 72);
    __m256 a50 = _mm256_loadu_ps(c + 80), a51 = _mm256_loadu_ps(c + 88);
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 x0 = _mm256_loadu_ps(xt + k * kGemmTokens), x1 = _mm256_loadu_ps(xt + k * kGemmTokens + 8);
        __m256 v = _mm256_broadcast_ss(w0 + k);
        a00 = _mm256_fmadd_ps(v, x0, a00), a01 = _mm256_fmadd_ps(v, x1, a01);
        v = _mm256_broadcast_ss(w1 + k);
        a10 = _mm256_fmadd_ps(v, x0, a10), a11 = _mm256_fmadd_ps(v, x1, a11);
        v = _mm256_broadcast_ss(w2 + k);
        a20 = _mm256_fmadd_ps(v, x0, a20), a21 = _mm256_fmadd_ps(v, x1, a21);
        v = _mm256_broadcast_ss(w3 + k);
        a30 = _mm256_fmadd_ps(v, x0, a30), a31 = _mm256_fmadd_ps(v, x1, a31);
        v = _mm256_broadcast_ss(w4 + k);
        a40 = _mm256_fmadd_ps(v, x0, a40), a41 = _mm256_fmadd_ps(v, x1, a41);
        v = _mm256_broadcast_ss(w5 + k);
        a50 = _mm256_fmadd_ps(v, x0, a50), a51 = _mm256_fmadd_ps(v, x1, a51);
    }
    _mm256_storeu_ps(c + 0, a00), _mm256_storeu_ps(c + 8, a01);
    _mm256_storeu_ps(c + 16, a10), _mm256_storeu_ps(c + 24, a11);
    _mm256_storeu_ps(c + 32, a20), _mm256_storeu_ps(c + 40, a21);
    _mm256_storeu_ps(c + 48, a30), _mm256_storeu_ps(c + 56, a31);
    _mm256_storeu_ps(c + 64, a40), _mm256_storeu_ps(c + 72, a41);
    _mm256_storeu_ps(c + 80, a50), _mm256_storeu_ps(c + 88, a51);
}

// The decoders below give the values of quant_formats.cpp's, bit for bit: one exact
// conversion and one rounded product d * q per value, as there.
void decode_f16_avx2(const uint8_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
    }
    for (; i < n; ++i) dst[i] = half_at(src + 2 * i);
}

void decode_q8_0_avx2(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK; ++b, src += kQ8_0Bytes, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half_at(src));
        for (int j = 0; j < kQK; j += 8) {
            const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + j));
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
    }
}

void decode_q4_0_avx2(const uint8_t* src, float* dst, int64_t n) {
    const __m128i mask = _mm_set1_epi8(kNibbleMask), offset = _mm_set1_epi8(kQ4Offset);
    for (int64_t b = 0; b < n / kQK; ++b, src += kQ4_0Bytes, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half_at(src));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
        // values 0..15 from the low nibbles, 16..31 from the high ones, each minus 8
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, mask), offset);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, kNibbleBits), mask), offset);
        const __m128i parts[2] = {lo, hi};
        for (int h = 0; h < 2; ++h) {
            const __m128i q = parts[h];
            _mm256_storeu_ps(dst + 16 * h, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
            _mm256_storeu_ps(dst + 16 * h + 8,
                             _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)))));
        }
    }
}

// d * nibble + m: the product rounded, then the add (fp_contract_off.h), as quant_formats.cpp.
void decode_q4_1_avx2(const uint8_t* src, float* dst, int64_t n) {
    const __m128i mask = _mm_set1_epi8(kNibbleMask);
    for (int64_t b = 0; b < n / kQK; ++b, src += kQ4_1Bytes, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half_at(src)), m = _mm256_set1_ps(half_at(src + 2));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 4));
        // values 0..15 from the low nibbles, 16..31 from the high ones
        const __m128i parts[2] = {_mm_and_si128(raw, mask), _mm_and_si128(_mm_srli_epi16(raw, kNibbleBits), mask)};
        for (int h = 0; h < 2; ++h) {
            const __m128i q = parts[h];
            const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
            const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q, 8)));
            _mm256_storeu_ps(dst + 16 * h, _mm256_add_ps(_mm256_mul_ps(d, lo), m));
            _mm256_storeu_ps(dst + 16 * h + 8, _mm256_add_ps(_mm256_mul_ps(d, hi), m));
        }
    }
}

void decode_q4_k_avx2(const uint8_t* src, float* dst, int64_t n) {
    const __m256i mask = _mm256_set1_epi8(kNibbleMask);
    for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ4_KBytes, dst += kQK_K) {
        const float d = half_at(src), dmin = half_at(src + 2);
        uint8_t sc[kQ4_KSubBlocks], mn[kQ4_KSubBlocks];
        q4_k_unpack(src + kQ4_KScalesOff, sc, mn);
        for (int64_t c = 0; c < kQK_K / kQ4_KChunk; ++c) {
            // chunk c: sub-block 2c in the low nibbles of 32 bytes, 2c+1 in the high ones
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + kQ4_KQsOff + c * (kQ4_KChunk / 2)));
            const __m256i parts[2] = {_mm256_and_si256(raw, mask), _mm256_and_si256(_mm256_srli_epi16(raw, kNibbleBits), mask)};
            for (int h = 0; h < 2; ++h) {
                const int s = static_cast<int>(2 * c + h);
                store_scaled_offset(parts[h], _mm256_set1_ps(d * static_cast<float>(sc[s])),
                                    _mm256_set1_ps(dmin * static_cast<float>(mn[s])), dst + c * kQ4_KChunk + 32 * h);
            }
        }
    }
}

void decode_q6_k_avx2(const uint8_t* src, float* dst, int64_t n) {
    const __m256i low4 = _mm256_set1_epi8(kNibbleMask), low2 = _mm256_set1_epi8(kTwoBitMask);
    const __m256i offset = _mm256_set1_epi8(kQ6Offset);
    for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ6_KBytes, dst += kQK_K) {
        const float d = half_at(src + kQ6_KDOff);
        const int8_t* scales = reinterpret_cast<const int8_t*>(src + kQ6_KScalesOff);
        for (int64_t h = 0; h < kQK_K / kQ6_KHalf; ++h) {
            const uint8_t* ql = src + h * (kQ6_KHalf / 2);
            const __m256i ql_runs[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql)),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + kQ6_KRun))};
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + kQ6_KQhOff + h * (kQ6_KHalf / 4)));
            for (int g = 0; g < kQ6_KHalf / kQ6_KRun; ++g) {
                // quarter g (block_layout.h): low 4 bits from run g % 2 (low nibbles if g < 2),
                // top 2 bits from bits 2g..2g+1 of qh
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql_runs[g % 2], (g / 2) * kNibbleBits), low4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), low2);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, kNibbleBits)), offset);
                const int8_t* sg = scales + h * (kQ6_KHalf / 16) + 2 * g;
                float* y = dst + h * kQ6_KHalf + g * kQ6_KRun;
                // 16 values per scale: store_scaled's two 16-value halves take one scale each
                const __m128i halves[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
                for (int s = 0; s < 2; ++s) {
                    const __m256 scale = _mm256_set1_ps(d * static_cast<float>(sg[s]));
                    _mm256_storeu_ps(y + 16 * s, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(halves[s]))));
                    _mm256_storeu_ps(y + 16 * s + 8, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(
                                                                         _mm256_cvtepi8_epi32(_mm_srli_si128(halves[s], 8)))));
                }
            }
        }
    }
}

}  // namespace edgegen
#endif
