// SIMD twins of diffusion.cpp's inner loops (same values; the portable loops stay the fallback).
#pragma once

#include <cstdint>

namespace edgegen {

#if defined(__x86_64__) || defined(_M_X64)
// diffusion_avx2.cpp (call only on AVX2 CPUs): dst[c * ld + i] = src[i][c] for c < n, i < 16
void transpose16_avx2(const float* const* src, int64_t n, float* dst, int64_t ld);
// out = u * gelu_erf(g) and out = silu(x) over n values (out may be x)
void gelu_mul_avx2(const float* g, const float* u, float* out, int64_t n);
void silu_avx2(const float* x, float* out, int64_t n);
#endif

}  // namespace edgegen
