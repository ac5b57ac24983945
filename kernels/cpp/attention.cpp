// Online-softmax attention (one pass over the keys, as in FlashAttention): per (query, head)
// keep the running max m, the running sum l of exp(s - m) and the running weighted sum of
// values acc; when a tile of keys raises the max, rescale l and acc by exp(m_old - m_new).
// Work is split over (t, head) pairs; later queries see more keys, hence dynamic scheduling.
#include "attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

namespace edgegen {
namespace {

constexpr int64_t kKeyTile = 64;  // scores computed per tile before one max update

}  // namespace

void attention(const float* q, const float* k_cache, const float* v_cache, int64_t T, int64_t Hq,
               int64_t Hkv, int64_t C, int64_t Dh, int64_t pos0, float scale, float* out, int threads,
               const DotTable* dots) {
    const DotF32 dot_k = dots != nullptr ? dots->f32 : nullptr;
    const Axpy axpy = dots != nullptr ? dots->axpy : nullptr;
    const ExpShift exp_shift = dots != nullptr ? dots->exp_shift : nullptr;
    const int64_t tasks = T * Hq;
    if (tasks == 0) return;
    const int64_t group = Hq / Hkv;
    // work ~ query rows x heads x keys x head size (2 passes over the keys)
    const int64_t work = tasks * (pos0 + T) * Dh * 2;
    const int team = static_cast<int>(std::min<int64_t>(team_for(work, threads), tasks));
    const int64_t scratch_per_thread = padded_count<float>(Dh + kKeyTile);
    std::vector<float> scratch(static_cast<size_t>(team * scratch_per_thread));

#pragma omp parallel num_threads(team)
    {
        float* acc = scratch.data() + omp_get_thread_num() * scratch_per_thread;  // (Dh,)
        float* s = acc + Dh;                                                       // (kKeyTile,)
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t t = task / Hq, h = task % Hq;
            const int64_t n_keys = pos0 + t + 1;
            const float* qh = q + task * Dh;
            const float* kh = k_cache + (h / group) * C * Dh;
            const float* vh = v_cache + (h / group) * C * Dh;

            float m = -std::numeric_limits<float>::infinity();
            float l = 0.0f;
            std::fill(acc, acc + Dh, 0.0f);
            for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
                // 1. scores of this tile and their max
                const int64_t len = std::min(kKeyTile, n_keys - j0);
                float tile_max = -std::numeric_limits<float>::infinity();
                for (int64_t j = 0; j < len; ++j) {
                    const float* kj = kh + (j0 + j) * Dh;
                    s[j] = (dot_k != nullptr ? dot_k(reinterpret_cast<const uint8_t*>(kj), qh, Dh) : dot(qh, kj, Dh)) * scale;
                    tile_max = std::max(tile_max, s[j]);
                }
                // 2. a larger max rescales what was accumulated so far (exp(-inf) = 0 at the start)
                if (tile_max > m) {
                    const float corr = std::exp(m - tile_max);
                    l *= corr;
                    for (int64_t i = 0; i < Dh; ++i) acc[i] *= corr;
                    m = tile_max;
                }
                // 3. accumulate exp(s - m) and exp(s - m) * v
                if (exp_shift != nullptr) {
                    exp_shift(s, m, len);
                } else {
                    for (int64_t j = 0; j < len; ++j) s[j] = std::exp(s[j] - m);
                }
                for (int64_t j = 0; j < len; ++j) {
                    const float p = s[j];
                    const float* vj = vh + (j0 + j) * Dh;
                    l += p;
                    if (axpy != nullptr) {
                        axpy(p, vj, acc, Dh);
                    } else {
                        for (int64_t i = 0; i < Dh; ++i) acc[i] += p * vj[i];
                    }
                }
            }
            float* oh = out + task * Dh;
            const float inv_l = 1.0f / l;
            for (int64_t i = 0; i < Dh; ++i) oh[i] = acc[i] * inv_l;
        }
    }
}

}  // namespace edgegen
