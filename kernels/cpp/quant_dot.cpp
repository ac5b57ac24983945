// matmul and get_rows over GGUF weight bytes.
//
// matmul walks the weights once: each thread takes groups of kRowGroup rows, decodes one
// chunk (kChunkValues values) of each row into a small stack buffer, and dots that buffer
// against the same columns of every activation row before moving on. A decoded chunk is
// therefore used T times while it is in L1, and the dequantized matrix never exists.
// Every out[t, n] is computed by the same sequence of operations whatever T, N or the
// thread count, so results are deterministic and row t of a batch equals x[t] alone.
#include "quant_dot.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "common.h"

namespace edgegen {
namespace {

constexpr int64_t kRowGroup = 4;        // weight rows decoded together (activations reused from L1)
constexpr int64_t kChunkValues = 256;   // values decoded per row per step: a multiple of every block size
// Row groups are handed out dynamically, a few at a time: a thread that is preempted, or runs
// on a slower core (big.LITTLE), does not hold the whole product back.
constexpr int kGroupsPerGrab = 8;

}  // namespace

void matmul(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K,
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

void get_rows(const QuantFormat& fmt, const uint8_t* w, int64_t K,
              const int32_t* ids, int64_t T, float* out, int threads) {
    const int64_t row_bytes = fmt.row_bytes(K);
    const int team = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(T, 1)));
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t t = 0; t < T; ++t) fmt.decode(w + ids[t] * row_bytes, out + t * K, K);
}

}  // namespace edgegen
