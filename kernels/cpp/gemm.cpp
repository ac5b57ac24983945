// Prompt GEMM driver (gemm.h): activations transposed into token blocks, weight rows decoded a
// chunk at a time per task, the table's register tile over every token block.
#include "gemm.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "act_quant.h"
#include "common.h"

namespace edgegen {
namespace {

constexpr int64_t kGemmGroups = 8;  // register-tile row groups per task: 48 rows (3 cache lines of output per token) share each token chunk
constexpr int64_t kTaskRows = kGemmRows * kGemmGroups;

DecodeFn table_decoder(const QuantFormat& fmt, const DotTable& dots) {
    DecodeFn fast = nullptr;
    switch (fmt.qtype) {
        case kF16: fast = dots.decode_f16; break;
        case kQ8_0: fast = dots.decode_q8_0; break;
        case kQ4_0: fast = dots.decode_q4_0; break;
        case kQ4_1: fast = dots.decode_q4_1; break;
        case kQ4_K: fast = dots.decode_q4_k; break;
        case kQ6_K: fast = dots.decode_q6_k; break;
        default: break;
    }
    return fast != nullptr ? fast : fmt.decode;
}

// Row x (K,) -> row (K,): d * q of its 8-bit blocks.
template <class Block, int64_t kValues>
void round_row(void (*quantize)(const float*, Block*, int64_t), const float* x, int64_t K, Block* blocks, float* row) {
    quantize(x, blocks, K);
    for (int64_t b = 0; b < K / kValues; ++b) {
        for (int64_t i = 0; i < kValues; ++i) row[b * kValues + i] = blocks[b].d * static_cast<float>(blocks[b].qs[i]);
    }
}

// Scratch buffers of the calling thread, kept between calls: a prompt runs a few hundred
// products of the same sizes, and fresh multi-megabyte vectors cost page faults every time.
template <class T>
T* scratch(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
}

}  // namespace

bool matmul_gemm(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t T,
                 float* out, int threads, const DotTable& dots, int64_t act_block) {
    if (dots.gemm_tile == nullptr) return false;
    const GemmTile tile = dots.gemm_tile;
    const DecodeFn decode = table_decoder(fmt, dots);
    const QuantizeQ8 q8_fn = dots.quantize_q8 != nullptr ? dots.quantize_q8 : quantize_q8;
    const QuantizeQ8K q8k_fn = dots.quantize_q8k != nullptr ? dots.quantize_q8k : quantize_q8k;
    const int64_t row_bytes = fmt.row_bytes(K);
    const int64_t blocks = (T + kGemmTokens - 1) / kGemmTokens;
    const int64_t tasks = (N + kTaskRows - 1) / kTaskRows;
    // a multiply-add is a fraction of an elementwise operation: count 8 per unit of work, as dot_tiles
    const int team = static_cast<int>(std::min<int64_t>(team_for(N * T * K / 8, threads), tasks));
    const int64_t c_size = blocks * kTaskRows * kGemmTokens;  // per task: c[block][row][token]
    // sized before the team starts: an allocation failure throws here, not inside OpenMP
    thread_local std::vector<float> xt_buf, c_buf, w_buf, rows_buf;
    thread_local std::vector<BlockQ8> q8_buf;
    thread_local std::vector<BlockQ8K> q8k_buf;
    float* xt = scratch(xt_buf, blocks * K * kGemmTokens);
    float* c_all = scratch(c_buf, team * c_size);
    float* w_all = scratch(w_buf, team * kTaskRows * kGemmChunk);
    float* rows_all = scratch(rows_buf, team * kGemmTokens * K);  // one token block's rounded rows
    BlockQ8* q8 = act_block == kQ8Values ? scratch(q8_buf, team * (K / kQ8Values)) : nullptr;
    BlockQ8K* q8k = act_block == kQ8KValues ? scratch(q8k_buf, team * (K / kQ8KValues)) : nullptr;

#pragma omp parallel num_threads(team)
    {
        const int me = omp_get_thread_num();
        // 1. x (T, K) -> xt[block][k][token], rounded to 8 bits as the dot path would (into
        //    rows[token][k] first), then transposed with sequential writes; tokens past T are 0
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const float* src[kGemmTokens];
            float* rows = rows_all + me * kGemmTokens * K;
            for (int64_t i = 0; i < kGemmTokens; ++i) {
                const int64_t t = b * kGemmTokens + i;
                float* row = rows + i * K;
                src[i] = row;
                if (t >= T) {
                    std::fill(row, row + K, 0.0f);
                } else if (q8 != nullptr) {
                    round_row<BlockQ8, kQ8Values>(q8_fn, x + t * K, K, q8 + me * (K / kQ8Values), row);
                } else if (q8k != nullptr) {
                    round_row<BlockQ8K, kQ8KValues>(q8k_fn, x + t * K, K, q8k + me * (K / kQ8KValues), row);
                } else {
                    src[i] = x + t * K;  // float activations as given
                }
            }
            float* dst = xt + b * K * kGemmTokens;
            for (int64_t k = 0; k < K; ++k) {
                for (int64_t i = 0; i < kGemmTokens; ++i) dst[k * kGemmTokens + i] = src[i][k];
            }
        }
        float* c = c_all + me * c_size;
        float* wd = w_all + me * kTaskRows * kGemmChunk;  // wd[row][k]

        // 2. tasks of kTaskRows weight rows, all tokens
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t n0 = task * kTaskRows, rows = std::min(kTaskRows, N - n0);
            const int64_t groups = (rows + kGemmRows - 1) / kGemmRows;
            std::fill(c, c + c_size, 0.0f);
            // rows past N inside the last group multiply as zeros
            std::fill(wd + rows * kGemmChunk, wd + groups * kGemmRows * kGemmChunk, 0.0f);
            for (int64_t k0 = 0; k0 < K; k0 += kGemmChunk) {
                const int64_t len = std::min(kGemmChunk, K - k0);
                const int64_t byte_off = fmt.row_bytes(k0);
                const int64_t next_off = fmt.row_bytes(std::min(K, k0 + kGemmChunk)), next_len = fmt.row_bytes(std::min(kGemmChunk, K - k0 - len));
                for (int64_t r = 0; r < rows; ++r) {
                    const uint8_t* row = w + (n0 + r) * row_bytes;
                    decode(row + byte_off, wd + r * kGemmChunk, len);
                    // Each row is read in short runs (one chunk, then the next row), which the
                    // hardware prefetchers do not follow: ask for the row's next chunk now, a
                    // whole chunk of tiles before it is decoded.
                    for (int64_t b = 0; b < next_len; b += kCacheLineBytes) __builtin_prefetch(row + next_off + b);
                }
                for (int64_t b = 0; b < blocks; ++b) {
                    const float* xb = xt + (b * K + k0) * kGemmTokens;
                    for (int64_t g = 0; g < groups; ++g) {
                        tile(wd + g * kGemmRows * kGemmChunk, kGemmChunk, xb, len,
                             c + (b * kTaskRows + g * kGemmRows) * kGemmTokens);
                    }
                }
            }
            // 3. out[t, n0 + r] = c[block][r][token]
            for (int64_t t = 0; t < T; ++t) {
                const float* ct = c + (t / kGemmTokens) * kTaskRows * kGemmTokens + t % kGemmTokens;
                for (int64_t r = 0; r < rows; ++r) out[t * N + n0 + r] = ct[r * kGemmTokens];
            }
        }
    }
    return true;
}

}  // namespace edgegen
