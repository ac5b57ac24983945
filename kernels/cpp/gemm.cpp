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

constexpr int64_t kGemmGroups = 4;  // register-tile row groups per task: 24 rows share each token chunk in L1
constexpr int64_t kTaskRows = kGemmRows * kGemmGroups;

DecodeFn table_decoder(const QuantFormat& fmt, const DotTable& dots) {
    DecodeFn fast = nullptr;
    switch (fmt.qtype) {
        case kF16: fast = dots.decode_f16; break;
        case kQ8_0: fast = dots.decode_q8_0; break;
        case kQ4_0: fast = dots.decode_q4_0; break;
        case kQ4_K: fast = dots.decode_q4_k; break;
        case kQ6_K: fast = dots.decode_q6_k; break;
        default: break;
    }
    return fast != nullptr ? fast : fmt.decode;
}

// x (T, K) -> x' (T, K) = d * q of its 8-bit blocks (act_quant.h), in place.
template <class Block, int64_t kValues, void (*Quantize)(const float*, Block*, int64_t)>
void round_to_8_bits(float* x, int64_t T, int64_t K, int threads) {
    const int64_t per_row = K / kValues;
    std::vector<Block> blocks(static_cast<size_t>(T * per_row));
    const int team = static_cast<int>(std::min<int64_t>(threads, T));
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t t = 0; t < T; ++t) {
        Block* row = blocks.data() + t * per_row;
        Quantize(x + t * K, row, K);
        for (int64_t b = 0; b < per_row; ++b) {
            for (int64_t i = 0; i < kValues; ++i) x[t * K + b * kValues + i] = row[b].d * static_cast<float>(row[b].qs[i]);
        }
    }
}

}  // namespace

void gemm_tile_scalar(const float* w, int64_t w_stride, const float* xt, int64_t kc, float* c) {
    for (int r = 0; r < kGemmRows; ++r) {
        float acc[kGemmTokens];
        for (int t = 0; t < kGemmTokens; ++t) acc[t] = c[r * kGemmTokens + t];
        for (int64_t k = 0; k < kc; ++k) {
            const float wv = w[r * w_stride + k];
            for (int t = 0; t < kGemmTokens; ++t) acc[t] += wv * xt[k * kGemmTokens + t];
        }
        for (int t = 0; t < kGemmTokens; ++t) c[r * kGemmTokens + t] = acc[t];
    }
}

bool matmul_gemm(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t T,
                 float* out, int threads, const DotTable& dots, int64_t act_block) {
    if (dots.gemm_tile == nullptr) return false;
    std::vector<float> rounded;
    if (act_block != 0) {
        rounded.assign(x, x + T * K);
        if (act_block == kQ8Values) round_to_8_bits<BlockQ8, kQ8Values, quantize_q8>(rounded.data(), T, K, threads);
        if (act_block == kQ8KValues) round_to_8_bits<BlockQ8K, kQ8KValues, quantize_q8k>(rounded.data(), T, K, threads);
        x = rounded.data();
    }
    const GemmTile tile = dots.gemm_tile;
    const DecodeFn decode = table_decoder(fmt, dots);
    const int64_t row_bytes = fmt.row_bytes(K);
    const int64_t blocks = (T + kGemmTokens - 1) / kGemmTokens;
    const int64_t tasks = (N + kTaskRows - 1) / kTaskRows;
    const int team = static_cast<int>(std::min<int64_t>(threads, tasks));
    const int64_t c_size = blocks * kTaskRows * kGemmTokens;  // per task: c[block][row][token]
    // allocated before the team starts: an allocation failure throws here, not inside OpenMP
    std::vector<float> xt(static_cast<size_t>(blocks * K * kGemmTokens), 0.0f);
    std::vector<float> c_all(static_cast<size_t>(team * c_size));
    std::vector<float> w_all(static_cast<size_t>(team * kTaskRows * kGemmChunk));

#pragma omp parallel num_threads(team)
    {
        // 1. x (T, K) -> xt[block][k][token]; tokens past T stay 0
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; ++t) {
            float* dst = xt.data() + (t / kGemmTokens) * K * kGemmTokens + t % kGemmTokens;
            const float* src = x + t * K;
            for (int64_t k = 0; k < K; ++k) dst[k * kGemmTokens] = src[k];
        }
        float* c = c_all.data() + omp_get_thread_num() * c_size;
        float* wd = w_all.data() + omp_get_thread_num() * kTaskRows * kGemmChunk;  // wd[row][k]

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
                for (int64_t r = 0; r < rows; ++r) decode(w + (n0 + r) * row_bytes + byte_off, wd + r * kGemmChunk, len);
                for (int64_t b = 0; b < blocks; ++b) {
                    const float* xb = xt.data() + (b * K + k0) * kGemmTokens;
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
