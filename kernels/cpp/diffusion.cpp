// Convolution and multi-head attention of the native diffusion models (diffusion.h).
//
// conv2d is a GEMM on the table's register tile (gemm.h's GemmTile) whose activation side is
// built straight from the image: each block of 16 output pixels' patches is written transposed
// (xt[k][16], 8 x 8 register transposes per kernel tap), with padding and nearest upsampling
// resolved in the gather. With many pixels each thread gathers its own slices (kOwnBytes, kept in
// L2) and runs all weight rows on them; with few, the team shares a band (kBandBytes) and splits
// (48 weight rows) x (token slice) items. float32 weights are read in place; F16 rows are decoded
// a chunk of 256 values at a time per item. Attention runs on the same tile per
// block of 16 queries: scores^T = K_h q^T (keys as the tile's rows) land in exactly the layout
// the second product takes (xt[key][16]), softmax runs down the columns, and out^T = V_h^T P^T.
// On AVX2 (diffusion_simd.h's AttnKernels) the scores come with their column max in one pass, the
// exponentials and their sums in a second, and a head dim's last group of < 6 rows gets a
// narrower tile: the same values, bit for bit, as the portable loops with the AVX2 table.
#include "diffusion.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "common.h"
#include "diffusion_simd.h"
#include "gemm.h"

namespace edgegen {
namespace {

constexpr int64_t kBandBytes = int64_t{4} << 20;   // transposed patches of one band (shared by the team)
constexpr int64_t kTaskRows = kGemmRows * 8;       // weight rows per work item
constexpr int64_t kOwnBytes = int64_t{512} << 10;   // per-thread patches when threads split the pixels
constexpr int64_t kMinSliceBlocks = 4;             // token blocks per work item, at least
constexpr int64_t kAttnRows = 128;                 // query rows per attention task (results do not depend on it)
constexpr int64_t kAttnKeyChunk = 384;             // keys exponentiated then weighed while in L1 (ditto)

DecodeFn decoder_for(const QuantFormat& fmt, const DotTable& dots) {
    if (fmt.qtype == kF16 && dots.decode_f16 != nullptr) return dots.decode_f16;
    return fmt.decode;
}

template <class T>
T* grow(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
}

// dst[c * ld + i] = src[i][c] for c < n, i < 16: 4 x 4 blocks through SSE registers where there are.
void transpose16(const float* const* src, int64_t n, float* dst, int64_t ld) {
    int64_t c = 0;
#if defined(__SSE2__)
    for (; c + 4 <= n; c += 4) {
        for (int64_t i = 0; i < kGemmTokens; i += 4) {
            __m128 r0 = _mm_loadu_ps(src[i] + c), r1 = _mm_loadu_ps(src[i + 1] + c);
            __m128 r2 = _mm_loadu_ps(src[i + 2] + c), r3 = _mm_loadu_ps(src[i + 3] + c);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(dst + c * ld + i, r0);
            _mm_storeu_ps(dst + (c + 1) * ld + i, r1);
            _mm_storeu_ps(dst + (c + 2) * ld + i, r2);
            _mm_storeu_ps(dst + (c + 3) * ld + i, r3);
        }
    }
#endif
    for (; c < n; ++c) {
        for (int64_t i = 0; i < kGemmTokens; ++i) dst[c * ld + i] = src[i][c];
    }
}

using Transpose16 = void (*)(const float* const* src, int64_t n, float* dst, int64_t ld);

void gather_block(const float* x, const Conv2dShape& s, int64_t t0, int64_t M, const float* zeros, Transpose16 transpose,
                  float* xt) {
    const int64_t HoWo = s.Ho * s.Wo, Hu = s.H * s.upsample, Wu = s.W * s.upsample;
    int64_t b[kGemmTokens], oy[kGemmTokens], ox[kGemmTokens];
    for (int64_t i = 0; i < kGemmTokens; ++i) {
        const int64_t t = t0 + i;
        b[i] = t < M ? t / HoWo : -1, oy[i] = t % HoWo / s.Wo, ox[i] = t % s.Wo;
    }
    const float* src[kGemmTokens];
    for (int64_t ky = 0; ky < s.kh; ++ky) {
        for (int64_t kx = 0; kx < s.kw; ++kx) {
            for (int64_t i = 0; i < kGemmTokens; ++i) {
                const int64_t iy = oy[i] * s.stride - s.pad_top + ky, ix = ox[i] * s.stride - s.pad_left + kx;
                const bool inside = b[i] >= 0 && iy >= 0 && iy < Hu && ix >= 0 && ix < Wu;
                src[i] = inside ? x + ((b[i] * s.H + iy / s.upsample) * s.W + ix / s.upsample) * s.Cin : zeros;
            }
            transpose(src, s.Cin, xt + (ky * s.kw + kx) * s.Cin * kGemmTokens, kGemmTokens);
        }
    }
}

struct ConvPlan {
    int64_t K, M, N, band, slice, tasks;
};

// One work item: weight rows [n0, n0 + kTaskRows) against token blocks [b0, b0 + nb) of the band
// starting at token t0; c and wd are the calling thread's scratch.
void conv_item(const ConvPlan& p, const QuantFormat& fmt, const uint8_t* w, const float* bias, const float* xt,
               int64_t t0, int64_t band_tokens, int64_t n0, int64_t b0, int64_t nb, float* c, float* wd,
               DecodeFn decode, GemmTile tile, float* out) {
    const int64_t rows = std::min(kTaskRows, p.N - n0), groups = (rows + kGemmRows - 1) / kGemmRows;
    const int64_t row_bytes = fmt.row_bytes(p.K);
    // float32 weights are read in place, except a last partial group (padded with zero rows)
    const int64_t first_decoded = fmt.qtype == kF32 ? rows / kGemmRows * kGemmRows : 0;
    std::fill(c, c + nb * kTaskRows * kGemmTokens, 0.0f);
    std::fill(wd + rows * kGemmChunk, wd + groups * kGemmRows * kGemmChunk, 0.0f);
    for (int64_t k0 = 0; k0 < p.K; k0 += kGemmChunk) {
        const int64_t len = std::min(kGemmChunk, p.K - k0), off = fmt.row_bytes(k0);
        for (int64_t r = first_decoded; r < rows; ++r) decode(w + (n0 + r) * row_bytes + off, wd + r * kGemmChunk, len);
        for (int64_t b = 0; b < nb; ++b) {
            const float* xb = xt + ((b0 + b) * p.K + k0) * kGemmTokens;
            for (int64_t g = 0; g < groups; ++g) {
                float* cg = c + (b * kTaskRows + g * kGemmRows) * kGemmTokens;
                if (g * kGemmRows < first_decoded) {
                    const auto* wf = reinterpret_cast<const float*>(w + (n0 + g * kGemmRows) * row_bytes) + k0;
                    tile(wf, p.K, xb, len, cg);
                } else {
                    tile(wd + g * kGemmRows * kGemmChunk, kGemmChunk, xb, len, cg);
                }
            }
        }
    }
    for (int64_t b = 0; b < nb; ++b) {
        for (int64_t i = 0; i < kGemmTokens; ++i) {
            const int64_t tb = (b0 + b) * kGemmTokens + i;
            if (tb >= band_tokens) break;
            float* o = out + (t0 + tb) * p.N + n0;
            const float* ct = c + b * kTaskRows * kGemmTokens + i;
            for (int64_t r = 0; r < rows; ++r) o[r] = ct[r * kGemmTokens] + (bias != nullptr ? bias[n0 + r] : 0.0f);
        }
    }
}

}  // namespace

void conv2d(const float* x, const QuantFormat& fmt, const uint8_t* w, const float* bias, const Conv2dShape& s,
            float* out, int threads, const DotTable& dots) {
    ConvPlan p{};
    p.K = s.kh * s.kw * s.Cin, p.M = s.B * s.Ho * s.Wo, p.N = s.Cout;
    if (p.M == 0 || p.N == 0) return;
    p.tasks = (p.N + kTaskRows - 1) / kTaskRows;
    const int64_t m_blocks = (p.M + kGemmTokens - 1) / kGemmTokens;
    const int64_t max_band = std::max<int64_t>(1, kBandBytes / (p.K * kGemmTokens * 4));  // in blocks
    const int64_t bands = (m_blocks + max_band - 1) / max_band;
    p.band = (m_blocks + bands - 1) / bands;  // bands of (nearly) equal size
    const int team = team_for(p.M * p.N * p.K / 8, threads);
    // token slices per band: enough items for every thread several times over
    const int64_t want_slices = std::max<int64_t>(1, (8 * team + p.tasks - 1) / p.tasks);
    p.slice = std::min(p.band, std::max(kMinSliceBlocks, (p.band + want_slices - 1) / want_slices));
    const GemmTile tile = dots.gemm_tile != nullptr ? dots.gemm_tile : gemm_tile_scalar;
    const DecodeFn decode = decoder_for(fmt, dots);
    thread_local std::vector<float> xt_buf, c_buf, w_buf;
    const std::vector<float> zeros(static_cast<size_t>(s.Cin), 0.0f);
    Transpose16 transpose = transpose16;
#if defined(__x86_64__) || defined(_M_X64)
    if (dots.isa == Isa::kAvx2) transpose = transpose16_avx2;
#endif
    const int64_t w_size = kTaskRows * kGemmChunk;
    float* w_all = grow(w_buf, team * w_size);
    // Many output pixels: each thread gathers its own slices of pixels (kOwnBytes, cache-resident)
    // and runs every weight row against them, with no barrier until the end. Few: the team
    // shares a band of gathered pixels and splits it by weight rows and token slices.
    int64_t own = std::min(m_blocks / (4 * team), std::max<int64_t>(2, kOwnBytes / (p.K * kGemmTokens * 4)));
    for (int64_t o = own; o > 2 && team > 1; --o) {  // prefer slices that split evenly over the team
        if ((m_blocks + o - 1) / o % team == 0) {
            own = o;
            break;
        }
    }
    if (own >= (team > 1 ? 2 : kMinSliceBlocks)) {
        const int64_t own_c = own * kTaskRows * kGemmTokens;
        float* xt_own = grow(xt_buf, team * own * kGemmTokens * p.K);
        float* c_own = grow(c_buf, team * own_c);
#pragma omp parallel num_threads(team)
        {
            const int me = omp_get_thread_num();
            float* xt_me = xt_own + me * own * kGemmTokens * p.K;
#pragma omp for schedule(dynamic, 1)
            for (int64_t t0 = 0; t0 < p.M; t0 += own * kGemmTokens) {
                const int64_t tokens = std::min(own * kGemmTokens, p.M - t0), nb = (tokens + kGemmTokens - 1) / kGemmTokens;
                for (int64_t b = 0; b < nb; ++b) {
                    gather_block(x, s, t0 + b * kGemmTokens, p.M, zeros.data(), transpose, xt_me + b * kGemmTokens * p.K);
                }
                for (int64_t n0 = 0; n0 < p.N; n0 += kTaskRows) {
                    conv_item(p, fmt, w, bias, xt_me, t0, tokens, n0, 0, nb, c_own + me * own_c, w_all + me * w_size,
                              decode, tile, out);
                }
            }
        }
        return;
    }
    float* xt = grow(xt_buf, p.band * kGemmTokens * p.K);
    const int64_t c_size = p.slice * kTaskRows * kGemmTokens;
    float* c_all = grow(c_buf, team * c_size);
#pragma omp parallel num_threads(team)
    {
        const int me = omp_get_thread_num();
        for (int64_t t0 = 0; t0 < p.M; t0 += p.band * kGemmTokens) {
            const int64_t band_tokens = std::min(p.band * kGemmTokens, p.M - t0);
            const int64_t nblk = (band_tokens + kGemmTokens - 1) / kGemmTokens;
#pragma omp for schedule(static)
            for (int64_t b = 0; b < nblk; ++b) gather_block(x, s, t0 + b * kGemmTokens, p.M, zeros.data(), transpose, xt + b * kGemmTokens * p.K);
            const int64_t nsl = (nblk + p.slice - 1) / p.slice;
#pragma omp for schedule(dynamic, 1)
            for (int64_t item = 0; item < p.tasks * nsl; ++item) {
                const int64_t n0 = item / nsl * kTaskRows, b0 = item % nsl * p.slice;
                conv_item(p, fmt, w, bias, xt, t0, band_tokens, n0, b0, std::min(p.slice, nblk - b0),
                          c_all + me * c_size, w_all + me * w_size, decode, tile, out);
            }
        }
    }
}

namespace {

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Per-thread buffers of one (batch, head): its keys (rows padded to whole register tiles), its
// values transposed, and one block of 16 queries' transposed scores and output.
struct AttnScratch {
    std::vector<float> buf;
    float *kh, *vt, *qt, *st, *ot;
    AttnScratch(int64_t Nk, int64_t Dh) {
        const int64_t nk6 = round_up(Nk, kGemmRows), dh6 = round_up(Dh, kGemmRows);
        buf.assign(static_cast<size_t>(nk6 * Dh + dh6 * Nk + Dh * kGemmTokens + (nk6 + dh6) * kGemmTokens), 0.0f);
        kh = buf.data(), vt = kh + nk6 * Dh, qt = vt + dh6 * Nk, st = qt + Dh * kGemmTokens, ot = st + nk6 * kGemmTokens;
    }
};

// Softmax over keys of the transposed scores st[key][16] (each query one column), in place;
// row i (query q0 + i) sees keys <= q0 + i when causal. sum[i] gets the column's sum (the
// normalisation is applied to the output).
void softmax_columns(float* st, int64_t keys, bool causal, int64_t q0, ExpShift exp_shift, float* sum) {
    constexpr int64_t W = kGemmTokens;
    if (causal) {  // keys past a query: -inf before the max, 0 after the exponential
        for (int64_t j = q0 + 1; j < keys; ++j) std::fill(st + j * W, st + j * W + std::min<int64_t>(W, j - q0), -INFINITY);
    }
    float m[W];
    std::copy(st, st + W, m);
    for (int64_t j = 1; j < keys; ++j) {
        for (int64_t i = 0; i < W; ++i) m[i] = m[i] < st[j * W + i] ? st[j * W + i] : m[i];
    }
    for (int64_t j = 0; j < keys; ++j) {
        for (int64_t i = 0; i < W; ++i) st[j * W + i] -= m[i];
    }
    if (exp_shift != nullptr) {
        exp_shift(st, 0.0f, keys * W);
    } else {
        for (int64_t j = 0; j < keys * W; ++j) st[j] = std::exp(st[j]);
    }
    if (causal) {  // exp_shift clamps at about 1e-38 instead of reaching 0
        for (int64_t j = q0 + 1; j < keys; ++j) std::fill(st + j * W, st + j * W + std::min<int64_t>(W, j - q0), 0.0f);
    }
    std::fill(sum, sum + W, 0.0f);
    for (int64_t j = 0; j < keys; ++j) {
        for (int64_t i = 0; i < W; ++i) sum[i] += st[j * W + i];
    }
}

AttnKernels attn_kernels(const DotTable& dots) {
    AttnKernels kernels{nullptr, nullptr, nullptr};
#if defined(__x86_64__) || defined(_M_X64)
    if (dots.isa == Isa::kAvx2) kernels = AttnKernels{attn_scores_avx2, attn_exp_avx2, gemm_rows_avx2};
#endif
    (void)dots;
    return kernels;
}

// ot[d][16] = sum over keys [j0, j0 + len) of vt[d][key] * st[key][16], accumulated (head dims as the tile's rows)
// (through simd.tile_rows for a last group of fewer than 6 head dims where there is one)
void weigh_values(const AttnScratch& sc, int64_t Nk, int64_t Dh, int64_t j0, int64_t len, GemmTile tile,
                  const AttnKernels& simd) {
    for (int64_t g = 0; g * kGemmRows < Dh; ++g) {
        const float* w = sc.vt + g * kGemmRows * Nk + j0;
        float* c = sc.ot + g * kGemmRows * kGemmTokens;
        if (Dh - g * kGemmRows < kGemmRows && simd.tile_rows != nullptr) {
            simd.tile_rows(w, Nk, sc.st + j0 * kGemmTokens, len, c, Dh - g * kGemmRows);
        } else {
            tile(w, Nk, sc.st + j0 * kGemmTokens, len, c);
        }
    }
}

// sc.ot = V_h^T P^T and sum = the column sums of P^T for the block's transposed queries sc.qt:
// scores, their max, then the exponentials one chunk of keys at a time, each chunk weighing the
// values while it is in L1 (the same sums in the same order as one pass).
void softmax_values_simd(AttnScratch& sc, int64_t Nk, int64_t Dh, int64_t keys, bool causal, int64_t q0,
                         GemmTile tile, const AttnKernels& simd, float* sum) {
    float m[kGemmTokens];
    simd.scores(sc.kh, Dh, sc.qt, keys, causal, q0, sc.st, m);
    std::fill(sum, sum + kGemmTokens, 0.0f);
    const int64_t open = causal ? std::min(keys, q0 + 1) : keys;
    for (int64_t j0 = 0; j0 < keys; j0 += kAttnKeyChunk) {
        const int64_t len = std::min(kAttnKeyChunk, keys - j0);
        simd.exp(sc.st, j0, j0 + len, open, m, sum);
        weigh_values(sc, Nk, Dh, j0, len, tile, simd);
    }
}

// sc.kh = K_h (rows Dh apart) and sc.vt = V_h^T (rows Nk apart) of (batch b, head h); the values
// are transposed 16 keys at a time.
void load_head(const float* k, const float* v, int64_t b, int64_t h, int64_t Nk, int64_t D, int64_t Dh,
               Transpose16 transpose, AttnScratch& sc) {
    for (int64_t j = 0; j < Nk; ++j) {
        const float* kr = k + (b * Nk + j) * D + h * Dh;
        std::copy(kr, kr + Dh, sc.kh + j * Dh);
    }
    int64_t j = 0;
    for (const float* src[kGemmTokens]; j + kGemmTokens <= Nk; j += kGemmTokens) {
        for (int64_t i = 0; i < kGemmTokens; ++i) src[i] = v + (b * Nk + j + i) * D + h * Dh;
        transpose(src, Dh, sc.vt + j, Nk);
    }
    for (; j < Nk; ++j) {
        const float* vr = v + (b * Nk + j) * D + h * Dh;
        for (int64_t d = 0; d < Dh; ++d) sc.vt[d * Nk + j] = vr[d];
    }
}

// Queries [q0, q0 + 16) of (b, h): scores^T = K_h q^T on the register tile (keys as its rows),
// softmax per column, out^T = V_h^T P^T (head dims as its rows, keys as k); through simd's
// kernels where there are (same values).
void attend_block(const float* q, int64_t b, int64_t h, int64_t q0, int64_t Nq, int64_t Nk, int64_t D, int64_t Dh,
                  bool causal, float scale, AttnScratch& sc, GemmTile tile, ExpShift exp_shift,
                  const AttnKernels& simd, float* out) {
    const int64_t nq = std::min<int64_t>(kGemmTokens, Nq - q0);
    for (int64_t i = 0; i < kGemmTokens; ++i) {
        const float* qr = q + (b * Nq + q0 + i) * D + h * Dh;
        for (int64_t d = 0; d < Dh; ++d) sc.qt[d * kGemmTokens + i] = i < nq ? qr[d] * scale : 0.0f;
    }
    const int64_t keys = causal ? std::min<int64_t>(Nk, q0 + kGemmTokens) : Nk;
    std::fill(sc.ot, sc.ot + round_up(Dh, kGemmRows) * kGemmTokens, 0.0f);
    float sum[kGemmTokens];
    if (simd.scores != nullptr) {
        softmax_values_simd(sc, Nk, Dh, keys, causal, q0, tile, simd, sum);
    } else {
        const int64_t kg = (keys + kGemmRows - 1) / kGemmRows;
        std::fill(sc.st, sc.st + kg * kGemmRows * kGemmTokens, 0.0f);
        for (int64_t g = 0; g < kg; ++g) {
            tile(sc.kh + g * kGemmRows * Dh, Dh, sc.qt, Dh, sc.st + g * kGemmRows * kGemmTokens);
        }
        softmax_columns(sc.st, keys, causal, q0, exp_shift, sum);
        weigh_values(sc, Nk, Dh, 0, keys, tile, simd);
    }
    for (int64_t i = 0; i < nq; ++i) {
        float* o = out + (b * Nq + q0 + i) * D + h * Dh;
        const float inv = 1.0f / sum[i];
        for (int64_t d = 0; d < Dh; ++d) o[d] = sc.ot[d * kGemmTokens + i] * inv;
    }
}

}  // namespace

void mh_attention(const float* q, const float* k, const float* v, int64_t B, int64_t Nq, int64_t Nk,
                  int64_t heads, int64_t Dh, bool causal, int64_t chunk, float* out, int threads,
                  const DotTable& dots) {
    (void)chunk;  // scores are held for 16 query rows at a time per thread, below any useful chunk
    const int64_t D = heads * Dh;
    if (B * Nq * D == 0) return;
    const int64_t per_head = (Nq + kAttnRows - 1) / kAttnRows, items = B * heads * per_head;
    const int team = static_cast<int>(std::min<int64_t>(team_for(B * Nq * Nk * D / 4, threads), items));
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)));
    const GemmTile tile = dots.gemm_tile != nullptr ? dots.gemm_tile : gemm_tile_scalar;
    const AttnKernels simd = attn_kernels(dots);
    Transpose16 transpose = transpose16;
#if defined(__x86_64__) || defined(_M_X64)
    if (dots.isa == Isa::kAvx2) transpose = transpose16_avx2;
#endif
#pragma omp parallel num_threads(team)
    {
        AttnScratch sc(Nk, Dh);
        int64_t loaded = -1;  // the (batch, head) whose keys and values sc holds
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; ++item) {
            const int64_t bh = item / per_head, b = bh / heads, h = bh % heads;
            if (bh != loaded) {
                load_head(k, v, b, h, Nk, D, Dh, transpose, sc);
                loaded = bh;
            }
            const int64_t q_end = std::min(Nq, (item % per_head + 1) * kAttnRows);
            for (int64_t q0 = item % per_head * kAttnRows; q0 < q_end; q0 += kGemmTokens) {
                attend_block(q, b, h, q0, Nq, Nk, D, Dh, causal, scale, sc, tile, dots.exp_shift, simd, out);
            }
        }
    }
}

}  // namespace edgegen
