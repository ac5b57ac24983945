// matmul and get_rows over GGUF weight bytes.
//
// matmul runs one of two paths:
// - dot path (the default): activations quantized once to 8-bit blocks (act_quant.h) for the
//   block formats, or kept float32 for the float formats; then every out[t, n] is one call of
//   the chosen table's dot product (vec_dot.h) on weight row n in place. The (N, T) plane is cut
//   into tiles of kRowTile weight rows x kTokenTile activation rows: a weight row stays in L1
//   while it meets every activation row of the tile, the tile's activations stay in L2 while
//   the rows stream past. Tiles are handed to threads token-tile-major, so both cores share
//   one tile of activations.
// - decoded path (matmul_decoded, float32 activations): below.
//
// matmul_decoded walks the weights once: each thread takes groups of kRowGroup rows, decodes one
// chunk (kChunkValues values) of each row into a small stack buffer, and dots that buffer
// against the same columns of every activation row before moving on. A decoded chunk is
// therefore used T times while it is in L1, and the dequantized matrix never exists.
// Every out[t, n] is computed by the same sequence of operations whatever T, N or the
// thread count, so results are deterministic and row t of a batch equals x[t] alone.
#include "quant_dot.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "act_quant.h"
#include "common.h"
#include "gemm.h"

namespace edgegen {
namespace {

constexpr int64_t kRowGroup = 4;        // weight rows decoded together (activations reused from L1)
constexpr int64_t kChunkValues = 256;   // values decoded per row per step: a multiple of every block size
// Row groups are handed out dynamically, a few at a time: a thread that is preempted, or runs
// on a slower core (big.LITTLE), does not hold the whole product back.
constexpr int kGroupsPerGrab = 8;

}  // namespace

void matmul_decoded(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K,
                    const float* x, int64_t T, float* out, int threads) {
    static_assert(kChunkValues % 256 == 0, "a chunk must hold whole blocks of every format (largest: 256)");
    const int64_t row_bytes = fmt.row_bytes(K);
    const int64_t groups = (N + kRowGroup - 1) / kRowGroup;
    if (groups == 0 || T == 0) return;
    const int team = static_cast<int>(std::min<int64_t>(threads, groups));
    const int64_t acc_per_thread = padded_count<float>(T * kRowGroup);
    // allocated before the team starts: an allocation failure throws here, not inside OpenMP
    std::vector<float> acc_all(static_cast<size_t>(team * acc_per_thread));

#pragma omp parallel num_threads(team)
    {
        float* acc = acc_all.data() + omp_get_thread_num() * acc_per_thread;  // acc[t * kRowGroup + r]
        alignas(kCacheLineBytes) float buf[kRowGroup][kChunkValues];

#pragma omp for schedule(dynamic, kGroupsPerGrab)
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t n0 = g * kRowGroup;
            const int64_t rows = std::min(kRowGroup, N - n0);
            std::fill(acc, acc + T * kRowGroup, 0.0f);

            for (int64_t k0 = 0; k0 < K; k0 += kChunkValues) {
                // 1. decode this chunk of each row of the group
                const int64_t len = std::min(kChunkValues, K - k0);
                const int64_t byte_off = fmt.row_bytes(k0);
                for (int64_t r = 0; r < rows; ++r) fmt.decode(w + (n0 + r) * row_bytes + byte_off, buf[r], len);

                // 2. use it against every activation row
                for (int64_t t = 0; t < T; ++t) {
                    const float* xk = x + t * K + k0;
                    for (int64_t r = 0; r < rows; ++r) acc[t * kRowGroup + r] += dot(buf[r], xk, len);
                }
            }

            for (int64_t t = 0; t < T; ++t) {
                for (int64_t r = 0; r < rows; ++r) out[t * N + n0 + r] = acc[t * kRowGroup + r];
            }
        }
    }
}

namespace {

constexpr int64_t kRowTile = 16;     // weight rows per tile (16 rows of 2048 Q4_0 values: 18 KiB)
constexpr int64_t kTokenTile = 64;   // activation rows per tile
// Decode hands each thread this many runs of rows (dynamically: a slower core takes fewer);
// measured on TinyLlama-1.1B q4_0 with 2 threads: 59 ms/token with 16-row tiles, 44-46 ms
// with 8 to 32 runs per thread, 50 ms with 1 to 4.
constexpr int64_t kDecodeRunsPerThread = 16;

// out[t * N + n] = dot(w row n, act + t * act_stride) over the tiled (N, T) plane. With a `tile`
// function (TileQ8) the inside of each task goes kTileRows x kTileTokens at a time and only its
// edges one product at a time.
template <class Act, class Dot, class Tile>
void dot_tiles(Dot dot_row, Tile tile, const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K, const Act* act,
               int64_t act_stride, int64_t T, float* out, int threads) {
    static_assert(kRowTile % kTileRows == 0 && kTokenTile % kTileTokens == 0, "task tiles hold whole micro-tiles");
    // an integer multiply-add is a fraction of an elementwise operation: count 8 per unit of work
    const int team = static_cast<int>(std::min<int64_t>(team_for(N * T * K / 8, threads), (N + kRowTile - 1) / kRowTile));
    // Decode (T = 1) streams every row once: each thread takes a few long runs of rows, which
    // hardware prefetchers follow (short tiles handed out alternately leave gaps in each
    // thread's stream). Prompts use short tiles: their rows are reused from cache.
    const int64_t runs = team * kDecodeRunsPerThread;
    const int64_t row_tile = T == 1 ? ((N + runs - 1) / runs + kRowTile - 1) / kRowTile * kRowTile : kRowTile;
    const int64_t row_tiles = (N + row_tile - 1) / row_tile;
    const int64_t tasks = row_tiles * ((T + kTokenTile - 1) / kTokenTile);
#pragma omp parallel for num_threads(team) schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
        const int64_t n0 = (task % row_tiles) * row_tile, n1 = std::min(N, n0 + row_tile);
        const int64_t t0 = (task / row_tiles) * kTokenTile, t1 = std::min(T, t0 + kTokenTile);
        // the part covered by whole micro-tiles (empty without a tile function or for T = 1)
        const bool tiled = tile != nullptr && T > 1;
        const int64_t n_end = tiled ? n0 + (n1 - n0) / kTileRows * kTileRows : n0;
        const int64_t t_end = tiled ? t0 + (t1 - t0) / kTileTokens * kTileTokens : t0;
        for (int64_t n = n0; n < n_end; n += kTileRows) {
            for (int64_t t = t0; t < t_end; t += kTileTokens) {
                tile(w + n * row_bytes, row_bytes, act + t * act_stride, act_stride, K, out + t * N + n, N);
            }
        }
        for (int64_t n = n0; n < n1; ++n) {
            const uint8_t* row = w + n * row_bytes;
            for (int64_t t = (n < n_end ? t_end : t0); t < t1; ++t) out[t * N + n] = dot_row(row, act + t * act_stride, K);
        }
    }
}

// Activation rows x (T, K) quantized to Block blocks of kValues, then the tiled dot products.
template <class Block, int64_t kValues, class Dot, class Tile>
void matmul_int8(void (*quantize)(const float*, Block*, int64_t), Dot dot_row, Tile tile, const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K, const float* x, int64_t T,
                 float* out, int threads) {
    const int64_t per_row = K / kValues;
    std::vector<Block> act(static_cast<size_t>(T * per_row));
    const int team = static_cast<int>(std::min<int64_t>(threads, T));
#pragma omp parallel for num_threads(team) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; ++t) quantize(x + t * K, act.data() + t * per_row, K);
    dot_tiles(dot_row, tile, w, row_bytes, N, K, act.data(), per_row, T, out, threads);
}

// "No tile function" for activation type Act.
template <class Act>
constexpr void (*kNoTile)(const uint8_t*, int64_t, const Act*, int64_t, int64_t, float*, int64_t) = nullptr;

// Decode on Q4_0 / Q4_1 with a paired-activation dot (DotQ8Pair): x quantized, then rearranged in pairs.
void matvec_pairs(QuantizeQ8 quantize, DotQ8Pair dot, const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K, const float* x,
                       float* out, int threads) {
    std::vector<BlockQ8> blocks(static_cast<size_t>(K / kQ8Values));
    std::vector<BlockQ8Pair> pairs(blocks.size() / 2);
    quantize(x, blocks.data(), K);
    pair_q8(blocks.data(), pairs.data(), static_cast<int64_t>(blocks.size()));
    dot_tiles(dot, kNoTile<BlockQ8Pair>, w, row_bytes, N, K, pairs.data(), 0, 1, out, threads);
}

}  // namespace

void matmul(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t T, float* out,
            int threads, const DotTable* dots) {
    if (N == 0 || T == 0) return;
    const int64_t rb = fmt.row_bytes(K);
    if (dots == nullptr) return matmul_decoded(fmt, w, N, K, x, T, out, threads);
    // activations rounded as by the dot path below: 32-value blocks for Q8_0 / Q4_0 / Q4_1, 256 for the K-quants
    const int64_t act_block = fmt.qtype == kQ8_0 || fmt.qtype == kQ4_0 || fmt.qtype == kQ4_1 ? kQ8Values
                            : fmt.qtype == kQ4_K || fmt.qtype == kQ6_K ? kQ8KValues : 0;
    if (T >= kGemmMinTokens && matmul_gemm(fmt, w, N, K, x, T, out, threads, *dots, act_block)) return;
    const QuantizeQ8 q8 = dots->quantize_q8 != nullptr ? dots->quantize_q8 : quantize_q8;
    const QuantizeQ8K q8k = dots->quantize_q8k != nullptr ? dots->quantize_q8k : quantize_q8k;
    switch (fmt.qtype) {
        case kQ8_0: return matmul_int8<BlockQ8, kQ8Values>(q8, dots->q8_0, dots->q8_0_tile, w, rb, N, K, x, T, out, threads);
        case kQ4_0:
            if (T == 1 && dots->q4_0_pairs != nullptr && K % (2 * kQ8Values) == 0) {
                return matvec_pairs(q8, dots->q4_0_pairs, w, rb, N, K, x, out, threads);
            }
            return matmul_int8<BlockQ8, kQ8Values>(q8, dots->q4_0, dots->q4_0_tile, w, rb, N, K, x, T, out, threads);
        case kQ4_1:
            if (T == 1 && dots->q4_1_pairs != nullptr && K % (2 * kQ8Values) == 0) {
                return matvec_pairs(q8, dots->q4_1_pairs, w, rb, N, K, x, out, threads);
            }
            return matmul_int8<BlockQ8, kQ8Values>(q8, dots->q4_1, dots->q4_1_tile, w, rb, N, K, x, T, out, threads);
        case kQ4_K: return matmul_int8<BlockQ8K, kQ8KValues>(q8k, dots->q4_k, dots->q4_k_tile, w, rb, N, K, x, T, out, threads);
        case kQ6_K: return matmul_int8<BlockQ8K, kQ8KValues>(q8k, dots->q6_k, kNoTile<BlockQ8K>, w, rb, N, K, x, T, out, threads);
        case kF32: return dot_tiles(dots->f32, dots->f32_tile, w, rb, N, K, x, K, T, out, threads);
        case kF16: return dot_tiles(dots->f16, dots->f16_tile, w, rb, N, K, x, K, T, out, threads);
        case kBF16: return dot_tiles(dots->bf16, dots->bf16_tile, w, rb, N, K, x, K, T, out, threads);
        default: return matmul_decoded(fmt, w, N, K, x, T, out, threads);  // a format without an integer dot
    }
}

void get_rows(const QuantFormat& fmt, const uint8_t* w, int64_t K,
              const int32_t* ids, int64_t T, float* out, int threads) {
    const int64_t row_bytes = fmt.row_bytes(K);
    const int team = static_cast<int>(std::min<int64_t>(team_for(T * K, threads), std::max<int64_t>(T, 1)));
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t t = 0; t < T; ++t) fmt.decode(w + ids[t] * row_bytes, out + t * K, K);
}

}  // namespace edgegen
