// Row-times-vector dot products on GGUF weight blocks in place, one table per instruction set.
//
// A table's functions take one weight row (`w`, the row's bytes) and the matching activations:
// quantized blocks (act_quant.h) for the block formats, float32 for the float formats. `n` is
// the row length in values (a whole number of blocks). Each returns sum_k W[k] * x[k] in
// float32. Integer products are exact; only the per-block float scaling and the final sum
// round, so every table agrees with the NumPy reference (ref.matmul_act_q8_ref) to float32
// rounding, not bit for bit.
//
// Tables: scalar (portable C++, always there; the twin every SIMD table is tested against),
// AVX2+FMA+F16C (x86-64; compiled with those flags in its own file, used only when the running
// CPU reports them), NEON (AArch64, compiled only there). best_isa() picks at run time.
#pragma once

#include <cstdint>

#include "act_quant.h"
#include "quant_formats.h"

namespace edgegen {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kNeon = 2 };

using DotQ8 = float (*)(const uint8_t* w, const BlockQ8* x, int64_t n);
using DotQ8K = float (*)(const uint8_t* w, const BlockQ8K* x, int64_t n);
using DotF32 = float (*)(const uint8_t* w, const float* x, int64_t n);
// y[i] += a * x[i] over n floats (attention's weighted sum of values).
using Axpy = void (*)(float a, const float* x, float* y, int64_t n);
// s[i] = exp(s[i] - m) over n floats, s[i] <= m (attention's softmax numerators).
using ExpShift = void (*)(float* s, float m, int64_t n);
// out[i] = silu(gate[i]) * up[i] over n floats (SwiGLU); out may alias gate or up. Within a few
// ulp of the portable g / (1 + exp(-g)) * u.
using SiluMul = void (*)(const float* gate, const float* up, float* out, int64_t n);
// Q4_0 / Q4_1 row against paired activation blocks (act_quant.h BlockQ8Pair); n a multiple of 64.
using DotQ8Pair = float (*)(const uint8_t* w, const BlockQ8Pair* x, int64_t n);
// A register-blocked tile for prompt processing: kTileRows weight rows (row_bytes apart) times
// kTileTokens activation rows (x_stride blocks apart); out[c * out_stride + r] = dot(row r, x_c).
// Each weight block is unpacked once for kTileTokens products, each x block loaded once for
// kTileRows: the products, not the loads, are what remains.
constexpr int kTileRows = 2;
constexpr int kTileTokens = 4;
using TileQ8 = void (*)(const uint8_t* w, int64_t row_bytes, const BlockQ8* x, int64_t x_stride, int64_t n,
                        float* out, int64_t out_stride);
using TileQ8K = void (*)(const uint8_t* w, int64_t row_bytes, const BlockQ8K* x, int64_t x_stride, int64_t n,
                         float* out, int64_t out_stride);
using TileF32 = void (*)(const uint8_t* w, int64_t row_bytes, const float* x, int64_t x_stride, int64_t n,
                         float* out, int64_t out_stride);

// Prompt GEMM register tile (gemm.h): kGemmRows decoded weight rows (w_stride apart) against a
// block of 16 tokens stored transposed (xt[k * 16 + t]), accumulated into c[r * 16 + t].
using GemmTile = void (*)(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c);

struct DotTable {
    Isa isa;
    const char* name;
    DotQ8 q8_0;
    DotQ8 q4_0;
    DotQ8K q4_k;
    DotQ8K q6_k;
    DotF32 f32;
    DotF32 f16;
    DotF32 bf16;
    TileQ8 q8_0_tile;  // optional (nullptr: the one-row functions are used)
    TileQ8 q4_0_tile;
    TileQ8K q4_k_tile;
    DotQ8Pair q4_0_pairs;  // optional: decode rows of Q4_0 two blocks per register
    Axpy axpy;             // optional (nullptr: a plain loop)
    ExpShift exp_shift;    // optional (nullptr: std::exp); within 2 ulp of it
    TileF32 f32_tile;  // float formats: each weight vector widened once for kTileTokens products
    TileF32 f16_tile;
    TileF32 bf16_tile;
    GemmTile gemm_tile;  // optional: prompts as float GEMM on decoded weights (gemm.h)
    DecodeFn decode_f16; // optional: faster twins of quant_formats.cpp's decoders, same values
    DecodeFn decode_q8_0;
    DecodeFn decode_q4_0;
    DecodeFn decode_q4_k;
    DecodeFn decode_q6_k;
    QuantizeQ8 quantize_q8;    // optional: act_quant.h's quantizers, same bits
    QuantizeQ8K quantize_q8k;
    SiluMul silu_mul;          // optional (nullptr: std::exp per value)
    // Q4_1 (x = d*nibble + m): d*dx*sum(nibble*q) + m*dx*sum(q), the second sum BlockQ8::sum
    // (llama.cpp's block_q8_1 keeps d*sum(q) for it). Last, so the older positional initialisers hold.
    DotQ8 q4_1;
    TileQ8 q4_1_tile;          // optional
    DecodeFn decode_q4_1;      // optional
    DotQ8Pair q4_1_pairs;      // optional: as q4_0_pairs
};

extern const DotTable kDotScalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const DotTable kDotAvx2;
#endif
#if defined(__aarch64__)
extern const DotTable kDotNeon;
#endif

// The table for `isa`, or nullptr when it is not compiled in or the CPU lacks it.
const DotTable* dot_table(Isa isa);
// The fastest table this CPU runs.
Isa best_isa();

}  // namespace edgegen
