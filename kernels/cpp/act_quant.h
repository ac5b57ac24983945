// Activations quantized to 8 bits, the right-hand side of the integer dot products.
//   BlockQ8   32 values:  d float, qs int8[32], sum           x ~= d*q   (pairs with Q8_0, Q4_0, Q4_1);
//                         d is rounded to the nearest f16, as ggml stores it (block_q8_0)
//   BlockQ8K 256 values:  d float, qs int8[256], bsums[16]    x ~= d*q   (pairs with Q4_K, Q6_K)
// bsums[g] = sum of qs[16g .. 16g+16): the K-quant dots use it for their per-sub-block offsets.
// Rounding is round-half-to-even of x * (127 / max|x|), as kernels/ref.py quantize_act_ref and as
// llama.cpp's x86 path: the same files then give llama.cpp's integer sums exactly.
#pragma once

#include <cstdint>

namespace edgegen {

constexpr int64_t kQ8Values = 32;
constexpr int64_t kQ8KValues = 256;
constexpr int64_t kQ8KGroups = kQ8KValues / 16;

struct BlockQ8 {
    float d;
    int8_t qs[kQ8Values];
    int32_t sum;   // sum(qs): Q4_0 stores its values offset by 8, so a dot can take unsigned
                   // nibbles and subtract 8 * sum (in integers, exactly); Q4_1's min m meets it
                   // as m * d * sum (llama.cpp's block_q8_1 stores d * sum as f16: this is exact)
};

struct BlockQ8K {
    float d;
    int8_t qs[kQ8KValues];
    int16_t bsums[kQ8KGroups];
};

// Two consecutive BlockQ8 rearranged for a Q4_0 / Q4_1 row dot that unpacks two weight blocks per
// 256-bit register (their low nibbles side by side, then their high nibbles): lo holds values
// 0..15 of block 2p then of block 2p+1, hi values 16..31 of each; d and sum repeated per 4 lanes.
struct BlockQ8Pair {
    int8_t lo[kQ8Values];
    int8_t hi[kQ8Values];
    float d[8];          // d of block 2p in lanes 0..3, of block 2p+1 in lanes 4..7
    int32_t sum2[8];     // 2 * sum(qs) likewise: 4 lanes x 2 = the 8 x sum(qs) that Q4_0's offset costs
    float dsum[4];       // {0, d*sum(qs) of block 2p, 0, that of 2p+1}: meets a Q4_1 pair's {d, m, d, m}
                         // (d*sum is exact in float: an f16 times an integer below 2^12)
};

// blocks (nblocks,) -> nblocks / 2 pairs; nblocks even.
void pair_q8(const BlockQ8* blocks, BlockQ8Pair* out, int64_t nblocks);

// x (n,) float32 -> n / kQ8Values blocks; n a multiple of kQ8Values.
void quantize_q8(const float* x, BlockQ8* out, int64_t n);
// x (n,) float32 -> n / kQ8KValues blocks; n a multiple of kQ8KValues.
void quantize_q8k(const float* x, BlockQ8K* out, int64_t n);

using QuantizeQ8 = void (*)(const float* x, BlockQ8* out, int64_t n);
using QuantizeQ8K = void (*)(const float* x, BlockQ8K* out, int64_t n);

#if defined(__x86_64__) || defined(_M_X64)
// act_quant_avx2.cpp: the same blocks, bit for bit; call only where the CPU has AVX2 and F16C
// (through the AVX2 dot table).
void quantize_q8_avx2(const float* x, BlockQ8* out, int64_t n);
void quantize_q8k_avx2(const float* x, BlockQ8K* out, int64_t n);
#endif

}  // namespace edgegen
