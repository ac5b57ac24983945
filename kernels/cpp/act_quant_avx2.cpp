// AVX2 + F16C twins of act_quant.cpp's quantize_q8 / quantize_q8k, same bits: the same amax (a
// maximum does not depend on order; NaN skipped), the same product x * (127 / amax), the same
// clamp (NaN -> -127) and round-half-even. Built with -mavx2 -mfma -mf16c for this file only;
// reached through the AVX2 dot table (vec_dot.h), which runs only where the CPU has them.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "act_quant.h"

namespace edgegen {
namespace {

constexpr float kQ8Max = 127.0f;

// q[0..n) from x[0..n), n a multiple of 32; returns max|x| / 127 as act_quant.cpp's quantize_run.
float quantize_run_avx2(const float* x, int8_t* q, int64_t n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 vmax = _mm256_setzero_ps();
    // max_ps(a, m) returns m when a is NaN: a NaN is skipped, as the scalar comparison skips it
    for (int64_t i = 0; i < n; i += 8) vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask), vmax);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const __m256 id = _mm256_set1_ps(amax > 0.0f ? kQ8Max / amax : 0.0f);
    const __m256 lo = _mm256_set1_ps(-kQ8Max), hi = _mm256_set1_ps(kQ8Max);
    for (int64_t i = 0; i < n; i += 32) {
        __m256i v[4];
        for (int j = 0; j < 4; ++j) {
            // max_ps(p, lo) gives lo for a NaN p: NaN -> -127 as in the scalar clamp
            const __m256 p = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), id), lo), hi);
            v[j] = _mm256_cvtps_epi32(_mm256_round_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        // int32 -> int8 in order: packs work within 128-bit lanes, the permute puts them back
        const __m256i w16 = _mm256_packs_epi32(v[0], v[1]), x16 = _mm256_packs_epi32(v[2], v[3]);
        const __m256i b8 = _mm256_packs_epi16(w16, x16);
        const __m256i ordered = _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), ordered);
    }
    return amax / kQ8Max;
}

// sum of 16 int8 values starting at q
inline int sum16(const int8_t* q) {
    const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    __m128i s = _mm_madd_epi16(_mm_add_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)), _mm_set1_epi16(1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

}  // namespace

void quantize_q8_avx2(const float* x, BlockQ8* out, int64_t n) {
    for (int64_t b = 0; b < n / kQ8Values; ++b) {
        BlockQ8& blk = out[b];
        const float d = quantize_run_avx2(x + b * kQ8Values, blk.qs, kQ8Values);
        blk.d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));  // d rounded to f16, ties to even
        blk.sum = sum16(blk.qs) + sum16(blk.qs + 16);
    }
}

void quantize_q8k_avx2(const float* x, BlockQ8K* out, int64_t n) {
    for (int64_t b = 0; b < n / kQ8KValues; ++b) {
        BlockQ8K& blk = out[b];
        blk.d = quantize_run_avx2(x + b * kQ8KValues, blk.qs, kQ8KValues);
        for (int64_t g = 0; g < kQ8KGroups; ++g) blk.bsums[g] = static_cast<int16_t>(sum16(blk.qs + 16 * g));
    }
}

}  // namespace edgegen
#endif
