// AVX2 + FMA + F16C dot products (vec_dot.h); built with -mavx2 -mfma -mf16c for this file only
// and called only after best_isa() has seen those features on the running CPU.
//
// This file includes no header with external-linkage inline functions (common.h): a copy of
// one compiled here with AVX2 could be the one the linker keeps for the portable code.
// Integer core: a signed int8 product of 32 lanes uses maddubs (unsigned x signed -> int16
// pairs), so a signed left operand is split into |a| and the sign moved onto b.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

#include "block_layout.h"
#include "exp_avx2.h"
#include "gemm.h"
#include "half_avx2.h"
#include "vec_dot.h"

namespace edgegen {
namespace {

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

// 8 int32 lanes, each the sum of 4 adjacent products a[i]*b[i] of signed bytes.
inline __m256i dot_i8(__m256i a, __m256i b) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline __m256 q8_0_block(const uint8_t* blk, const BlockQ8& xb) {
    return _mm256_cvtepi32_ps(dot_i8(load256(blk + 2), load256(xb.qs)));
}

// Q4_0 as unsigned nibbles (0..15) times x, which maddubs takes directly; the stored offset of
// 8 comes off as sum(x) from each of the 8 int32 lanes (8 * sum(x) in all), exactly.
inline __m256i q4_0_nibbles(const uint8_t* qs) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, kNibbleBits), raw), _mm256_set1_epi8(kNibbleMask));
}

inline __m256 q4_0_block(const uint8_t* blk, const BlockQ8& xb) {
    const __m256i pairs = _mm256_maddubs_epi16(q4_0_nibbles(blk + 2), load256(xb.qs));
    const __m256i sums = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, _mm256_set1_epi32(xb.sum)));
}

// Q8_0 / Q4_0 rows: two blocks per step into two accumulators (independent FMA chains), each
// block's integer products scaled by d_w * d_x.
template <int64_t kBytes, __m256 (*Block)(const uint8_t*, const BlockQ8&)>
float dot_blocks(const uint8_t* w, const BlockQ8* x, int64_t n) {
    const int64_t nb = n / kQK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        const uint8_t* w0 = w + b * kBytes;
        const uint8_t* w1 = w0 + kBytes;
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_at(w0) * x[b].d), Block(w0, x[b]), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_at(w1) * x[b + 1].d), Block(w1, x[b + 1]), acc1);
    }
    if (b < nb) {
        const uint8_t* w0 = w + b * kBytes;
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_at(w0) * x[b].d), Block(w0, x[b]), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// One Q4_1 block: acc + d_w*d_x * (the unsigned nibbles times x, maddubs), and its mins term
// m_w * d_x*sum(x) into `mins` (d_x*sum(x) is exact in float: an f16 times an integer below 2^12).
inline __m256 q4_1_block(const uint8_t* blk, const BlockQ8& xb, __m256 acc, float* mins) {
    const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_0_nibbles(blk + 4), load256(xb.qs)),
                                           _mm256_set1_epi16(1));
    *mins += half_at(blk + 2) * (xb.d * static_cast<float>(xb.sum));
    return _mm256_fmadd_ps(_mm256_set1_ps(half_at(blk) * xb.d), _mm256_cvtepi32_ps(sums), acc);
}

// Q4_1 rows (odd block counts; tile edges): two blocks per step into two accumulators each.
float dot_q4_1(const uint8_t* w, const BlockQ8* x, int64_t n) {
    const int64_t nb = n / kQK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float mins0 = 0.0f, mins1 = 0.0f;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        acc0 = q4_1_block(w + b * kQ4_1Bytes, x[b], acc0, &mins0);
        acc1 = q4_1_block(w + (b + 1) * kQ4_1Bytes, x[b + 1], acc1, &mins1);
    }
    if (b < nb) acc0 = q4_1_block(w + b * kQ4_1Bytes, x[b], acc0, &mins0);
    return hsum(_mm256_add_ps(acc0, acc1)) + (mins0 + mins1);
}

// Two blocks' packed nibbles (16 bytes at q0 and at q1) against paired activations: per int32
// lane the sum of 8 unsigned-nibble x int8 products, lanes 0-3 block 0 and 4-7 block 1.
inline __m256i nibble_pair_sums(const uint8_t* q0, const uint8_t* q1, const BlockQ8Pair& xp) {
    const __m256i low4 = _mm256_set1_epi8(kNibbleMask);
    const __m256i packed = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(q1),
                                               reinterpret_cast<const __m128i*>(q0));
    const __m256i lo = _mm256_and_si256(packed, low4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, kNibbleBits), low4);
    const __m256i pairs16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load256(xp.lo)),
                                             _mm256_maddubs_epi16(hi, load256(xp.hi)));
    return _mm256_madd_epi16(pairs16, _mm256_set1_epi16(1));
}

// Q4_1 decode rows, two blocks per register as dot_q4_0_pairs, with no offset: per lane
// d_w*d_x * (its 4 products' sum); the mins term as [d0, m0, d1, m1] * [0, dx0*sum0, 0, dx1*sum1]
// (BlockQ8Pair::dsum) in one 128-bit FMA.
float dot_q4_1_pairs(const uint8_t* w, const BlockQ8Pair* x, int64_t n) {
    const __m256i d_lanes = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t p = 0; p < n / (2 * kQK); ++p) {
        const uint8_t* b0 = w + 2 * p * kQ4_1Bytes;
        const uint8_t* b1 = b0 + kQ4_1Bytes;
        const BlockQ8Pair& xp = x[p];
        const __m256i sums = nibble_pair_sums(b0 + 4, b1 + 4, xp);
        uint32_t dm0, dm1;  // d, m of each block: its first 4 bytes
        std::memcpy(&dm0, b0, sizeof dm0);
        std::memcpy(&dm1, b1, sizeof dm1);
        const __m128 dm = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128(static_cast<int>(dm0)),
                                                          _mm_cvtsi32_si128(static_cast<int>(dm1))));
        const __m256 scale = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(dm), d_lanes),
                                           _mm256_loadu_ps(xp.d));
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc);
        acc_m = _mm_fmadd_ps(dm, _mm_loadu_ps(xp.dsum), acc_m);
    }
    __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    return hsum(acc) + _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

// Q4_1 prompt tile: as tile_q8<true> without the offset, plus each (row, token)'s mins term.
void tile_q4_1(const uint8_t* w, int64_t row_bytes, const BlockQ8* x, int64_t x_stride, int64_t n, float* out,
               int64_t out_stride) {
    __m256 acc[kTileRows][kTileTokens];
    float mins[kTileRows][kTileTokens] = {};
    for (auto& row : acc) {
        for (auto& a : row) a = _mm256_setzero_ps();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / kQK; ++b) {
        __m256i xq[kTileTokens];
        for (int c = 0; c < kTileTokens; ++c) xq[c] = load256(x[c * x_stride + b].qs);
        for (int r = 0; r < kTileRows; ++r) {
            const uint8_t* blk = w + r * row_bytes + b * kQ4_1Bytes;
            const float dw = half_at(blk), mw = half_at(blk + 2);
            const __m256i wq = q4_0_nibbles(blk + 4);
            for (int c = 0; c < kTileTokens; ++c) {
                const BlockQ8& xb = x[c * x_stride + b];
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq[c]), ones);
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb.d), _mm256_cvtepi32_ps(p), acc[r][c]);
                mins[r][c] += mw * (xb.d * static_cast<float>(xb.sum));
            }
        }
    }
    for (int r = 0; r < kTileRows; ++r) {
        for (int c = 0; c < kTileTokens; ++c) out[c * out_stride + r] = hsum(acc[r][c]) + mins[r][c];
    }
}

// Q4_0 decode rows, two blocks per register against paired activations (BlockQ8Pair): one
// 256-bit register holds both blocks' 16 packed bytes, so one mask gives both blocks' low
// nibbles (values 0..15 of each) and one shift + mask their high nibbles; the four int32 lanes
// of each 128-bit half belong to one block, and their scales and offsets come per lane.
float dot_q4_0_pairs(const uint8_t* w, const BlockQ8Pair* x, int64_t n) {
    const __m256i halves = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t p = 0; p < n / (2 * kQK); ++p) {
        const uint8_t* b0 = w + 2 * p * kQ4_0Bytes;
        const uint8_t* b1 = b0 + kQ4_0Bytes;
        const BlockQ8Pair& xp = x[p];
        const __m256i sums = _mm256_sub_epi32(nibble_pair_sums(b0 + 2, b1 + 2, xp), load256(xp.sum2));
        // [d_w0 x4 | d_w1 x4] * [d_x0 x4 | d_x1 x4]
        uint16_t h0, h1;
        std::memcpy(&h0, b0, sizeof h0);
        std::memcpy(&h1, b1, sizeof h1);
        const __m128 dw = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h0 | (static_cast<uint32_t>(h1) << 16))));
        const __m256 scale = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(dw), halves),
                                           _mm256_loadu_ps(xp.d));
        if (p % 2 == 0) {
            acc0 = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc0);
        } else {
            acc1 = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc1);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// Prompt tiles (vec_dot.h TileQ8). Per block: each row's weights unpacked once, each token's
// activations loaded once, then kTileRows x kTileTokens products into as many accumulators.
// Q8_0 products use the sign trick (dot_i8); Q4_0 products take the unsigned nibbles and subtract
// the token's block sum from each of the 8 int32 lanes (8 x sum = the stored offset of 8), exactly.
template <bool kQ4>
void tile_q8(const uint8_t* w, int64_t row_bytes, const BlockQ8* x, int64_t x_stride, int64_t n, float* out,
             int64_t out_stride) {
    constexpr int64_t kBytes = kQ4 ? kQ4_0Bytes : kQ8_0Bytes;
    __m256 acc[kTileRows][kTileTokens];
    for (auto& row : acc) {
        for (auto& a : row) a = _mm256_setzero_ps();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / kQK; ++b) {
        __m256i xq[kTileTokens];
        for (int c = 0; c < kTileTokens; ++c) xq[c] = load256(x[c * x_stride + b].qs);
        for (int r = 0; r < kTileRows; ++r) {
            const uint8_t* blk = w + r * row_bytes + b * kBytes;
            const float dw = half_at(blk);
            // Q8_0: |w| once per block here, the sign of w moved onto each token's x below
            const __m256i raw = kQ4 ? _mm256_setzero_si256() : load256(blk + 2);
            const __m256i wq = kQ4 ? q4_0_nibbles(blk + 2) : _mm256_sign_epi8(raw, raw);
            for (int c = 0; c < kTileTokens; ++c) {
                const BlockQ8& xb = x[c * x_stride + b];
                __m256i p;
                if (kQ4) {
                    p = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq[c]), ones), _mm256_set1_epi32(xb.sum));
                } else {
                    p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, _mm256_sign_epi8(xq[c], raw)), ones);
                }
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb.d), _mm256_cvtepi32_ps(p), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < kTileRows; ++r) {
        for (int c = 0; c < kTileTokens; ++c) out[c * out_stride + r] = hsum(acc[r][c]);
    }
}

// The 8 scales (as int16, in both 128-bit lanes) and the 8 mins of a Q4_K block, the mins
// doubled into [m0, m0, m1, m1, ...] to meet the 16 bsums of the activations.
inline void q4_k_scales16(const uint8_t* s, __m256i* scales, __m256i* mins) {
    uint8_t sc[8], mn[8];
    q4_k_unpack(s, sc, mn);
    const __m128i sc16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc)));
    const __m128i mn8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn));
    *scales = _mm256_broadcastsi128_si256(sc16);
    *mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
}

// Every int16 lane = scale i of a q4_k_scales16 register (one byte shuffle, not a broadcast
// from memory).
inline __m256i q4_k_scale(__m256i scales, int i) {
    return _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<int16_t>((2 * i) | ((2 * i + 1) << 8))));
}

float dot_q4_k(const uint8_t* w, const BlockQ8K* x, int64_t n) {
    const __m256i low4 = _mm256_set1_epi8(kNibbleMask);
    __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK_K; ++b, w += kQ4_KBytes) {
        const BlockQ8K& xb = x[b];
        __m256i scales, mins16;
        q4_k_scales16(w + kQ4_KScalesOff, &scales, &mins16);
        // mins: sum_s m[s] * (bsums[2s] + bsums[2s+1]), kept as 8 lanes until the end
        const __m256i mins = _mm256_madd_epi16(load256(xb.bsums), mins16);

        __m256i sumi = _mm256_setzero_si256();
        const uint8_t* qs = w + kQ4_KQsOff;
        for (int c = 0; c < kQK_K / kQ4_KChunk; ++c) {
            const __m256i q = load256(qs + c * (kQ4_KChunk / 2));
            const __m256i lo = _mm256_and_si256(q, low4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, kNibbleBits), low4);
            const __m256i pl = _mm256_maddubs_epi16(lo, load256(xb.qs + c * kQ4_KChunk));
            const __m256i ph = _mm256_maddubs_epi16(hi, load256(xb.qs + c * kQ4_KChunk + kQ4_KChunk / 2));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pl, q4_k_scale(scales, 2 * c)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(ph, q4_k_scale(scales, 2 * c + 1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_at(w) * xb.d), _mm256_cvtepi32_ps(sumi), acc);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(half_at(w + 2) * xb.d), _mm256_cvtepi32_ps(mins), acc_min);
    }
    return hsum(acc) - hsum(acc_min);
}

// Q4_K prompt tile: each row's nibbles and scales unpacked once per 64-value chunk for
// kTileTokens tokens; the mins term kept as its own vector accumulator per (row, token).
void tile_q4_k(const uint8_t* w, int64_t row_bytes, const BlockQ8K* x, int64_t x_stride, int64_t n, float* out,
               int64_t out_stride) {
    const __m256i low4 = _mm256_set1_epi8(kNibbleMask);
    __m256 acc[kTileRows][kTileTokens], acc_min[kTileRows][kTileTokens];
    for (int r = 0; r < kTileRows; ++r) {
        for (int c = 0; c < kTileTokens; ++c) acc[r][c] = acc_min[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / kQK_K; ++b) {
        for (int r = 0; r < kTileRows; ++r) {
            const uint8_t* blk = w + r * row_bytes + b * kQ4_KBytes;
            __m256i scales, mins16;
            q4_k_scales16(blk + kQ4_KScalesOff, &scales, &mins16);
            __m256i sumi[kTileTokens];
            for (auto& v : sumi) v = _mm256_setzero_si256();
            for (int ch = 0; ch < kQK_K / kQ4_KChunk; ++ch) {
                const __m256i q = load256(blk + kQ4_KQsOff + ch * (kQ4_KChunk / 2));
                const __m256i lo = _mm256_and_si256(q, low4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, kNibbleBits), low4);
                const __m256i s_lo = q4_k_scale(scales, 2 * ch), s_hi = q4_k_scale(scales, 2 * ch + 1);
                for (int c = 0; c < kTileTokens; ++c) {
                    const int8_t* xq = x[c * x_stride + b].qs + ch * kQ4_KChunk;
                    const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(xq)), s_lo);
                    const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(xq + kQ4_KChunk / 2)), s_hi);
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(pl, ph));
                }
            }
            const float d = half_at(blk), dmin = half_at(blk + 2);
            for (int c = 0; c < kTileTokens; ++c) {
                const BlockQ8K& xb = x[c * x_stride + b];
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(sumi[c]), acc[r][c]);
                const __m256i m = _mm256_madd_epi16(load256(xb.bsums), mins16);
                acc_min[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * xb.d), _mm256_cvtepi32_ps(m), acc_min[r][c]);
            }
        }
    }
    for (int r = 0; r < kTileRows; ++r) {
        for (int c = 0; c < kTileTokens; ++c) out[c * out_stride + r] = hsum(acc[r][c]) - hsum(acc_min[r][c]);
    }
}

float dot_q6_k(const uint8_t* w, const BlockQ8K* x, int64_t n) {
    const __m256i low4 = _mm256_set1_epi8(kNibbleMask);
    const __m256i two = _mm256_set1_epi8(kTwoBitMask);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK_K; ++b, w += kQ6_KBytes) {
        const BlockQ8K& xb = x[b];
        const int8_t* scales = reinterpret_cast<const int8_t*>(w + kQ6_KScalesOff);
        // the stored values are q6 + 32: subtract 32 * sum_g scales[g] * bsums[g] once
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales)));
        const int offset = hsum(_mm256_madd_epi16(sc16, load256(xb.bsums)));
        // each half's 8 scales (one 128-bit lane of sc16) in both lanes
        const __m256i half_scales_of[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00),
                                           _mm256_permute2x128_si256(sc16, sc16, 0x11)};

        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < kQK_K / kQ6_KHalf; ++h) {
            const __m256i half_scales = half_scales_of[h];
            const uint8_t* ql = w + h * (kQ6_KHalf / 2);
            const __m256i l0 = load256(ql), l1 = load256(ql + kQ6_KRun);
            const __m256i qh = load256(w + kQ6_KQhOff + h * (kQ6_KHalf / 4));
            const __m256i quarter[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, two), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two), 4)),
            };
            for (int g = 0; g < 4; ++g) {
                const int64_t v0 = h * kQ6_KHalf + g * kQ6_KRun;  // first value; scales v0/16, v0/16 + 1
                // scales 2g, 2g+1 of this half: low 128-bit lane, high lane (one byte shuffle)
                const __m256i s = _mm256_shuffle_epi8(half_scales, _mm256_set_m128i(
                    _mm_set1_epi16(static_cast<int16_t>((4 * g + 2) | ((4 * g + 3) << 8))),
                    _mm_set1_epi16(static_cast<int16_t>((4 * g) | ((4 * g + 1) << 8)))));
                const __m256i p = _mm256_maddubs_epi16(quarter[g], load256(xb.qs + v0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        const __m256 total = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, _mm256_setr_epi32(kQ6Offset * offset, 0, 0, 0, 0, 0, 0, 0)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_at(w + kQ6_KDOff) * xb.d), total, acc);
    }
    return hsum(acc);
}

// Float formats: 32 values per step in four accumulators, then 8 at a time, then one by one.
// Load8 widens 8 stored values to floats; Load1 one value.
template <int64_t kBytes, __m256 (*Load8)(const uint8_t*), float (*Load1)(const uint8_t*)>
float dot_float(const uint8_t* w, const float* x, int64_t n) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int j = 0; j < 4; ++j) {
            acc[j] = _mm256_fmadd_ps(Load8(w + (i + 8 * j) * kBytes), _mm256_loadu_ps(x + i + 8 * j), acc[j]);
        }
    }
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(Load8(w + i * kBytes), _mm256_loadu_ps(x + i), acc[0]);
    float tail = 0.0f;
    for (; i < n; ++i) tail += Load1(w + i * kBytes) * x[i];
    return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail;
}

inline __m256 f32x8(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
inline __m256 f16x8(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 bf16x8(const uint8_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float f32x1(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline float bf16x1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// Float-format prompt tiles: per 8 columns, each row's weights widened once and multiplied
// into kTileTokens accumulators; the columns past the last multiple of 8 one by one.
template <int64_t kBytes, __m256 (*Load8)(const uint8_t*), float (*Load1)(const uint8_t*)>
void tile_float(const uint8_t* w, int64_t row_bytes, const float* x, int64_t x_stride, int64_t n, float* out,
                int64_t out_stride) {
    __m256 acc[kTileRows][kTileTokens];
    for (auto& row : acc) {
        for (auto& a : row) a = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv[kTileTokens];
        for (int c = 0; c < kTileTokens; ++c) xv[c] = _mm256_loadu_ps(x + c * x_stride + i);
        for (int r = 0; r < kTileRows; ++r) {
            const __m256 wv = Load8(w + r * row_bytes + i * kBytes);
            for (int c = 0; c < kTileTokens; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < kTileRows; ++r) {
        for (int c = 0; c < kTileTokens; ++c) {
            float tail = 0.0f;
            for (int64_t j = i; j < n; ++j) tail += Load1(w + r * row_bytes + j * kBytes) * x[c * x_stride + j];
            out[c * out_stride + r] = hsum(acc[r][c]) + tail;
        }
    }
}

void axpy(float a, const float* x, float* y, int64_t n) {
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
}


void exp_shift(float* s, float m, int64_t n) {
    const __m256 mv = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv)));
    if (i < n) {  // the tail through a padded register
        alignas(32) float tail[8];
        for (int64_t j = 0; j < 8; ++j) tail[j] = i + j < n ? s[i + j] - m : 0.0f;
        _mm256_store_ps(tail, exp_nonpositive(_mm256_load_ps(tail)));
        for (int64_t j = 0; i + j < n; ++j) s[i + j] = tail[j];
    }
}

// silu(g) * u with e = exp(-|g|) <= 1 (no overflow for any g): sigmoid(g) = 1 / (1 + e) for g >= 0,
// e / (1 + e) below; the same function as g / (1 + exp(-g)), a few ulp apart.
inline __m256 silu_mul8(__m256 g, __m256 u) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(g, abs_mask)));
    const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_mul_ps(_mm256_mul_ps(g, _mm256_div_ps(num, _mm256_add_ps(one, e))), u);
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {  // the tail through padded registers
        alignas(32) float g[8] = {}, u[8] = {}, o[8];
        for (int64_t j = 0; i + j < n; ++j) g[j] = gate[i + j], u[j] = up[i + j];
        _mm256_store_ps(o, silu_mul8(_mm256_load_ps(g), _mm256_load_ps(u)));
        for (int64_t j = 0; i + j < n; ++j) out[i + j] = o[j];
    }
}

}  // namespace

const DotTable kDotAvx2 = {
    Isa::kAvx2, "avx2", dot_blocks<kQ8_0Bytes, q8_0_block>, dot_blocks<kQ4_0Bytes, q4_0_block>, dot_q4_k, dot_q6_k,
    dot_float<4, f32x8, f32x1>, dot_float<2, f16x8, half_at>, dot_float<2, bf16x8, bf16x1>,
    tile_q8<false>, tile_q8<true>, tile_q4_k, dot_q4_0_pairs, axpy, exp_shift,
    tile_float<4, f32x8, f32x1>, tile_float<2, f16x8, half_at>, tile_float<2, bf16x8, bf16x1>,
    gemm_tile_avx2, decode_f16_avx2, decode_q8_0_avx2, decode_q4_0_avx2, decode_q4_k_avx2, decode_q6_k_avx2,
    quantize_q8_avx2, quantize_q8k_avx2, silu_mul,
    dot_q4_1, tile_q4_1, decode_q4_1_avx2, dot_q4_1_pairs,
};

}  // namespace edgegen
#endif
