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
// Attention of one block of 16 queries (diffusion.cpp's attend_block) in two steps, the values of
// its portable path (gemm tile on a zeroed block, softmax_columns with the AVX2 table's exp_shift)
// bit for bit. attn_scores_avx2: st[j][i] = kh[j] . qt[:, i] for keys j < keys (kh holds whole
// groups of 6 rows, Dh apart, and st as many), -inf where key j is hidden from query q0 + i
// (causal: j > q0 + i), and m[i] the column max. attn_exp_avx2: rows [j0, j1) of st replaced by
// exp(st - m) (hidden keys exactly 0), added to sum[i] in key order; rows from `open` on may
// hold hidden keys (open = keys, or min(keys, q0 + 1) when causal).
void attn_scores_avx2(const float* kh, int64_t Dh, const float* qt, int64_t keys, bool causal, int64_t q0, float* st,
                      float* m);
void attn_exp_avx2(float* st, int64_t j0, int64_t j1, int64_t open, const float* m, float* sum);
// gemm_tile_avx2 (gemm.h) on its first `rows` (1..5) weight rows only; c's other rows untouched
void gemm_rows_avx2(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c, int64_t rows);
#endif

// Attention's optional SIMD kernels, chosen once per call from the dot table's instruction set
// (nullptr: the portable loops of diffusion.cpp).
using AttnScores = void (*)(const float* kh, int64_t Dh, const float* qt, int64_t keys, bool causal, int64_t q0,
                           float* st, float* m);
using AttnExp = void (*)(float* st, int64_t j0, int64_t j1, int64_t open, const float* m, float* sum);
struct AttnKernels {
    AttnScores scores;  // both or neither
    AttnExp exp;
    // optional: the GEMM tile on fewer than 6 rows (a head dim's last group, e.g. 16 = 6 + 6 + 4)
    void (*tile_rows)(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c, int64_t rows);
};

}  // namespace edgegen
