// Prompt processing as a float32 matrix-matrix product on decoded weight panels.
//
// matmul_gemm computes out (T, N) = x (T, K) . W (N, K)^T for T >= kGemmMinTokens:
// 1. x is copied once into token blocks of kGemmTokens, transposed: xt[block][k][16];
// 2. each task takes kGemmRows x kGemmGroups weight rows and walks K in chunks of kGemmChunk:
//    it decodes the chunk of its rows into float32 (L1), then runs the register tile
//    (GemmTile) for every token block against it, accumulating into its own (rows, T) buffer;
// 3. the buffer is written to out.
// A weight value is decoded once per product and used T times; the tile broadcasts it against
// 16 tokens in two vectors, so the loads stay below the multiply-adds. Activations are rounded to
// 8 bits per block first where the dot path rounds them (act_block 32: BlockQ8, 256: BlockQ8K;
// 0: float32 as given), so a prompt and a decode step see the same x' = d * q and the result is
// their float product with the decoded weights, summed over k in order (independent of T, N and
// threads), as ref.matmul_act_q8_ref.
#pragma once

#include <cstdint>

#include "quant_formats.h"
#include "vec_dot.h"

namespace edgegen {

constexpr int kGemmRows = 6;        // weight rows per register tile
constexpr int kGemmTokens = 16;     // tokens per register tile (two 8-float vectors)
constexpr int64_t kGemmChunk = 256; // values decoded per row per step: whole blocks of every format
// matmul (quant_dot.h) takes this path from this many activation rows on; fewer go through the
// 8-bit dot products and their tiles, which waste nothing on a partly filled token block.
constexpr int64_t kGemmMinTokens = 16;

// GemmTile (vec_dot.h): c[r * kGemmTokens + t] += sum_{k < kc} w[r * w_stride + k] * xt[k * kGemmTokens + t]
// for r < kGemmRows, t < kGemmTokens.

// The table's GEMM tile and decoders (its own where it has them, the portable ones otherwise).
// Returns false, computing nothing, when the table has no GEMM tile.
bool matmul_gemm(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t T,
                 float* out, int threads, const DotTable& dots, int64_t act_block);

// Portable tile (the scalar table's; the twin the SIMD tiles are tested against).
void gemm_tile_scalar(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c);

#if defined(__x86_64__) || defined(_M_X64)
// gemm_avx2.cpp (compiled with -mavx2 -mfma -mf16c; call only when the CPU has them)
void gemm_tile_avx2(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c);
void decode_f16_avx2(const uint8_t* src, float* dst, int64_t n);
void decode_q8_0_avx2(const uint8_t* src, float* dst, int64_t n);
void decode_q4_0_avx2(const uint8_t* src, float* dst, int64_t n);
void decode_q4_1_avx2(const uint8_t* src, float* dst, int64_t n);
void decode_q4_k_avx2(const uint8_t* src, float* dst, int64_t n);
void decode_q6_k_avx2(const uint8_t* src, float* dst, int64_t n);
#endif

}  // namespace edgegen
