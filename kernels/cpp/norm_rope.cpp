// rmsnorm, rope, swiglu. rmsnorm and rope work in float64 like their references (the cost
// is a few operations per activation, negligible beside matmul) and round once.
#include "norm_rope.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"

namespace edgegen {

void rmsnorm(const float* x, const float* weight, double eps, float* out, int64_t T, int64_t D, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * D;
        float* ot = out + t * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xt[i]) * xt[i];
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
        for (int64_t i = 0; i < D; ++i) ot[i] = static_cast<float>(static_cast<double>(xt[i]) * inv * weight[i]);
    }
}

void rope(float* x, const int32_t* positions, int64_t T, int64_t H, int64_t Dh, int64_t n_rot,
          double theta, int style, int threads) {
    const int64_t half = n_rot / 2;
    if (T == 0 || half == 0) return;
    const int team = static_cast<int>(std::min<int64_t>(threads, T));
    const int64_t scratch_per_thread = padded_count<double>(2 * half);  // cos, sin
    std::vector<double> scratch(static_cast<size_t>(team * scratch_per_thread));
    // NORMAL pairs (2i, 2i+1); NEOX pairs (i, i + half).
    const int64_t first_step = style == kRopeNormal ? 2 : 1;
    const int64_t partner = style == kRopeNormal ? 1 : half;

#pragma omp parallel num_threads(team)
    {
        double* cs = scratch.data() + omp_get_thread_num() * scratch_per_thread;
        double* sn = cs + half;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; ++t) {
            // 1. angles of this position, shared by every head
            for (int64_t i = 0; i < half; ++i) {
                const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
                const double ang = static_cast<double>(positions[t]) * freq;
                cs[i] = std::cos(ang);
                sn[i] = std::sin(ang);
            }
            // 2. rotate each head's pairs
            for (int64_t h = 0; h < H; ++h) {
                float* xh = x + (t * H + h) * Dh;
                for (int64_t i = 0; i < half; ++i) {
                    float* pa = xh + i * first_step;
                    float* pb = pa + partner;
                    const double a = *pa, b = *pb;
                    *pa = static_cast<float>(a * cs[i] - b * sn[i]);
                    *pb = static_cast<float>(a * sn[i] + b * cs[i]);
                }
            }
        }
    }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

}  // namespace edgegen
