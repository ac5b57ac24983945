// exp(x) for x <= 0 on AVX2+FMA, for the files compiled with those flags (vec_dot_avx2.cpp,
// diffusion_avx2.cpp): one definition, so the text engine's softmax and the diffusion kernels
// round alike.
#pragma once

#include <immintrin.h>

namespace edgegen {

// exp(x) for x <= 0 (clamped at -87.3), 8 at a time: x = n ln2 + r, exp(r) by Cephes' expf
// polynomial, 2^n from the exponent bits.
static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    // n = x log2(e) rounded to the nearest integer (ties to even, as _mm256_round_ps) by adding and
    // removing 1.5 * 2^23; the sum's low mantissa bits then hold n + 0x400000
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 nm = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), magic);
    const __m256 n = _mm256_sub_ps(nm, magic);
    const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_sub_epi32(_mm256_castps_si256(nm), _mm256_set1_epi32(0x4B400000 - 127));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(bits, 23)));
}

}  // namespace edgegen
