// AVX2 pieces of the diffusion kernels (diffusion.h): the 16-token patch transpose of conv2d's
// gather, and GEGLU's and SiLU's elementwise loops (same formulas as diffusion_norm.cpp's). Built with -mavx2 -mfma -mf16c for this file only (CMakeLists.txt); call only when the
// CPU has them (the AVX2 dot table is chosen).
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "diffusion_simd.h"
#include "gemm.h"

namespace edgegen {

// dst[c * 16 + i] = src[i][c] for c < n, i < 16: 8 x 8 blocks through registers, the rest scalar.
void transpose16_avx2(const float* const* src, int64_t n, float* dst, int64_t ld) {
    static_assert(kGemmTokens == 16, "two 8 x 8 blocks per 8 values");
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        for (int64_t i = 0; i < kGemmTokens; i += 8) {
            __m256 r[8], t[8];
            for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src[i + j] + c);
            for (int j = 0; j < 8; j += 2) {
                t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
                t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
            }
            for (int j = 0; j < 8; j += 4) {
                r[j] = _mm256_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(1, 0, 1, 0));
                r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(3, 2, 3, 2));
                r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(1, 0, 1, 0));
                r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(3, 2, 3, 2));
            }
            // r[0..3]: columns 0,1,2,3 of rows 0-3 (low lane) and columns 4..7 (high lane); r[4..7] rows 4-7
            for (int j = 0; j < 4; ++j) {
                _mm256_storeu_ps(dst + (c + j) * ld + i, _mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
                _mm256_storeu_ps(dst + (c + j + 4) * ld + i, _mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
            }
        }
    }
    for (; c < n; ++c) {
        for (int64_t i = 0; i < kGemmTokens; ++i) dst[c * ld + i] = src[i][c];
    }
}

namespace {

// exp(x) for x <= 0 (clamped at -87.3), 8 at a time: x = n ln2 + r, exp(r) by Cephes' expf
// polynomial, 2^n from the exponent bits.
inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(pow2n));
}

inline __m256 abs8(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))); }

// u * gelu(g), gelu(g) = 0.5 g erfc(-g / sqrt 2) with Numerical Recipes' erfcc (diffusion_norm.cpp)
inline __m256 gelu_mul8(__m256 g, __m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 a = _mm256_mul_ps(abs8(g), _mm256_set1_ps(0.70710678118654752f));
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), a, one));
    static const float c[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                              -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
    __m256 p = _mm256_set1_ps(c[0]);
    for (int i = 1; i < 10; ++i) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c[i]));
    const __m256 e = exp_nonpositive(_mm256_min_ps(_mm256_setzero_ps(), _mm256_fnmadd_ps(a, a, p)));
    const __m256 ec = _mm256_mul_ps(t, e);
    const __m256 pos = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ);
    const __m256 cdf2 = _mm256_blendv_ps(ec, _mm256_sub_ps(_mm256_set1_ps(2.0f), ec), pos);  // 2 Phi(g)
    return _mm256_mul_ps(u, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), g), cdf2));
}

// x * sigmoid(x) with e = exp(-|x|) <= 1
inline __m256 silu8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_setzero_ps(), abs8(x)));
    const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_mul_ps(x, _mm256_div_ps(num, _mm256_add_ps(one, e)));
}

// The last n % 8 values through a zero-padded register.
template <class Fn>
void tail8(const float* a, const float* b, float* out, int64_t n, Fn fn) {
    alignas(32) float ta[8] = {}, tb[8] = {};
    for (int64_t j = 0; j < n; ++j) ta[j] = a[j], tb[j] = b != nullptr ? b[j] : 0.0f;
    _mm256_store_ps(ta, fn(_mm256_load_ps(ta), _mm256_load_ps(tb)));
    for (int64_t j = 0; j < n; ++j) out[j] = ta[j];
}

}  // namespace

void gelu_mul_avx2(const float* g, const float* u, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, gelu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) tail8(g + i, u + i, out + i, n - i, gelu_mul8);
}

void silu_avx2(const float* x, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, silu8(_mm256_loadu_ps(x + i)));
    if (i < n) tail8(x + i, nullptr, out + i, n - i, [](__m256 v, __m256) { return silu8(v); });
}

}  // namespace edgegen

#endif
