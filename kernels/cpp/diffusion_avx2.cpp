// AVX2 pieces of the diffusion kernels (diffusion.h): the 16-token patch transpose of conv2d's
// gather, attention's scores + softmax of one 16-query block, and GEGLU's and SiLU's elementwise loops (same formulas as diffusion_norm.cpp's). Built with -mavx2 -mfma -mf16c for this file only (CMakeLists.txt); call only when the
// CPU has them (the AVX2 dot table is chosen).
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "diffusion_simd.h"
#include "exp_avx2.h"
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

namespace {

// Scores of key rows w[0..5] (Dh apart) against the block's transposed queries qt[Dh][16], stored
// to c[6][16] (not accumulated: the same products, in the same order, as gemm_tile_avx2 on a
// zeroed c). The column maxima of the first `live` rows (<= 6) are folded into m0, m1.
inline void score_group6(const float* w, int64_t Dh, const float* qt, float* c, int64_t live, __m256& m0, __m256& m1) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int64_t k = 0; k < Dh; ++k) {
        const __m256 x0 = _mm256_loadu_ps(qt + k * kGemmTokens), x1 = _mm256_loadu_ps(qt + k * kGemmTokens + 8);
        __m256 v = _mm256_broadcast_ss(w + k);
        a00 = _mm256_fmadd_ps(v, x0, a00), a01 = _mm256_fmadd_ps(v, x1, a01);
        v = _mm256_broadcast_ss(w + Dh + k);
        a10 = _mm256_fmadd_ps(v, x0, a10), a11 = _mm256_fmadd_ps(v, x1, a11);
        v = _mm256_broadcast_ss(w + 2 * Dh + k);
        a20 = _mm256_fmadd_ps(v, x0, a20), a21 = _mm256_fmadd_ps(v, x1, a21);
        v = _mm256_broadcast_ss(w + 3 * Dh + k);
        a30 = _mm256_fmadd_ps(v, x0, a30), a31 = _mm256_fmadd_ps(v, x1, a31);
        v = _mm256_broadcast_ss(w + 4 * Dh + k);
        a40 = _mm256_fmadd_ps(v, x0, a40), a41 = _mm256_fmadd_ps(v, x1, a41);
        v = _mm256_broadcast_ss(w + 5 * Dh + k);
        a50 = _mm256_fmadd_ps(v, x0, a50), a51 = _mm256_fmadd_ps(v, x1, a51);
    }
    _mm256_storeu_ps(c + 0, a00), _mm256_storeu_ps(c + 8, a01);
    _mm256_storeu_ps(c + 16, a10), _mm256_storeu_ps(c + 24, a11);
    _mm256_storeu_ps(c + 32, a20), _mm256_storeu_ps(c + 40, a21);
    _mm256_storeu_ps(c + 48, a30), _mm256_storeu_ps(c + 56, a31);
    _mm256_storeu_ps(c + 64, a40), _mm256_storeu_ps(c + 72, a41);
    _mm256_storeu_ps(c + 80, a50), _mm256_storeu_ps(c + 88, a51);
    if (live == kGemmRows) {  // the portable loop's m < s ? s : m is max_ps(s, m) for non-NaN scores
        m0 = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(a00, a10), _mm256_max_ps(a20, a30)), _mm256_max_ps(_mm256_max_ps(a40, a50), m0));
        m1 = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(a01, a11), _mm256_max_ps(a21, a31)), _mm256_max_ps(_mm256_max_ps(a41, a51), m1));
    } else {
        for (int64_t r = 0; r < live; ++r) {
            m0 = _mm256_max_ps(_mm256_loadu_ps(c + r * kGemmTokens), m0);
            m1 = _mm256_max_ps(_mm256_loadu_ps(c + r * kGemmTokens + 8), m1);
        }
    }
}

}  // namespace

namespace {

// gemm_tile_avx2 on the first R rows only (the same products and sums for them)
template <int R>
void gemm_rows(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c) {
    __m256 a[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a[r][0] = _mm256_loadu_ps(c + r * kGemmTokens), a[r][1] = _mm256_loadu_ps(c + r * kGemmTokens + 8);
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 x0 = _mm256_loadu_ps(xt + k * kGemmTokens), x1 = _mm256_loadu_ps(xt + k * kGemmTokens + 8);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m256 v = _mm256_broadcast_ss(w + r * w_stride + k);
            a[r][0] = _mm256_fmadd_ps(v, x0, a[r][0]), a[r][1] = _mm256_fmadd_ps(v, x1, a[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(c + r * kGemmTokens, a[r][0]), _mm256_storeu_ps(c + r * kGemmTokens + 8, a[r][1]);
}

}  // namespace

void gemm_rows_avx2(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c, int64_t rows) {
    switch (rows) {
        case 1: return gemm_rows<1>(w, w_stride, xt, kc, c);
        case 2: return gemm_rows<2>(w, w_stride, xt, kc, c);
        case 3: return gemm_rows<3>(w, w_stride, xt, kc, c);
        case 4: return gemm_rows<4>(w, w_stride, xt, kc, c);
        default: return gemm_rows<5>(w, w_stride, xt, kc, c);
    }
}

void attn_scores_avx2(const float* kh, int64_t Dh, const float* qt, int64_t keys, bool causal, int64_t q0, float* st,
                      float* m) {
    static_assert(kGemmTokens == 16, "a score row is two 8-float vectors");
    constexpr int64_t W = kGemmTokens;
    const int64_t open = causal ? std::min(keys, q0 + 1) : keys;  // rows every query of the block sees
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 m0 = ninf, m1 = ninf;
    for (int64_t j = 0; j < keys; j += kGemmRows) {
        score_group6(kh + j * Dh, Dh, qt, st + j * W, std::max<int64_t>(0, std::min<int64_t>(kGemmRows, open - j)), m0, m1);
    }
    const __m256 lane0 = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), lane1 = _mm256_add_ps(lane0, _mm256_set1_ps(8.0f));
    for (int64_t j = open; j < keys; ++j) {  // causal: key j is hidden from queries q0 + i < j
        const __m256 first = _mm256_set1_ps(static_cast<float>(j - q0));
        const __m256 s0 = _mm256_blendv_ps(_mm256_loadu_ps(st + j * W), ninf, _mm256_cmp_ps(lane0, first, _CMP_LT_OQ));
        const __m256 s1 = _mm256_blendv_ps(_mm256_loadu_ps(st + j * W + 8), ninf, _mm256_cmp_ps(lane1, first, _CMP_LT_OQ));
        _mm256_storeu_ps(st + j * W, s0), _mm256_storeu_ps(st + j * W + 8, s1);
        m0 = _mm256_max_ps(s0, m0), m1 = _mm256_max_ps(s1, m1);
    }
    _mm256_storeu_ps(m, m0), _mm256_storeu_ps(m + 8, m1);
}

void attn_exp_avx2(float* st, int64_t j0, int64_t j1, int64_t open, const float* m, float* sum) {
    constexpr int64_t W = kGemmTokens;
    const __m256 m0 = _mm256_loadu_ps(m), m1 = _mm256_loadu_ps(m + 8), ninf = _mm256_set1_ps(-INFINITY);
    __m256 t0 = _mm256_loadu_ps(sum), t1 = _mm256_loadu_ps(sum + 8);
    int64_t j = j0;
    for (const int64_t end = std::min(j1, std::max(j0, open)); j < end; ++j) {
        const __m256 e0 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(st + j * W), m0));
        const __m256 e1 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(st + j * W + 8), m1));
        _mm256_storeu_ps(st + j * W, e0), _mm256_storeu_ps(st + j * W + 8, e1);
        t0 = _mm256_add_ps(t0, e0), t1 = _mm256_add_ps(t1, e1);
    }
    for (; j < j1; ++j) {  // hidden (-inf) scores weigh exactly 0
        const __m256 s0 = _mm256_loadu_ps(st + j * W), s1 = _mm256_loadu_ps(st + j * W + 8);
        const __m256 e0 = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(s0, m0)), _mm256_cmp_ps(s0, ninf, _CMP_NEQ_OQ));
        const __m256 e1 = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(s1, m1)), _mm256_cmp_ps(s1, ninf, _CMP_NEQ_OQ));
        _mm256_storeu_ps(st + j * W, e0), _mm256_storeu_ps(st + j * W + 8, e1);
        t0 = _mm256_add_ps(t0, e0), t1 = _mm256_add_ps(t1, e1);
    }
    _mm256_storeu_ps(sum, t0), _mm256_storeu_ps(sum + 8, t1);
}

}  // namespace edgegen

#endif
