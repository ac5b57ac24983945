// rmsnorm, rope, swiglu. rmsnorm and rope work in float64 like their references (the cost
// is a few operations per activation, negligible beside matmul) and round once.
#include "norm_rope.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "vec_dot.h"

namespace edgegen {

void rmsnorm(const float* x, const float* weight, double eps, float* out, int64_t T, int64_t D, int threads) {
#pragma omp parallel for num_threads(team_for(T * D, threads)) schedule(static)
    for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * D;
        float* ot = out + t * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xt[i]) * xt[i];
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
        for (int64_t i = 0; i < D; ++i) ot[i] = static_cast<float>(static_cast<double>(xt[i]) * inv * weight[i]);
    }
}

void rope_angles(const int32_t* positions, int64_t T, int64_t n_rot, double theta, double* cs, double* sn) {
    const int64_t half = n_rot / 2;
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
            const double ang = static_cast<double>(positions[t]) * freq;
            cs[t * half + i] = std::cos(ang);
            sn[t * half + i] = std::sin(ang);
        }
    }
}

void rope_rotate(float* x, const double* cs, const double* sn, int64_t T, int64_t H, int64_t Dh, int64_t n_rot,
                 int style, int threads) {
    const int64_t half = n_rot / 2;
    // NORMAL pairs (2i, 2i+1); NEOX pairs (i, i + half).
    const int64_t first_step = style == kRopeNormal ? 2 : 1;
    const int64_t partner = style == kRopeNormal ? 1 : half;
#pragma omp parallel for num_threads(team_for(T * H * n_rot, threads)) schedule(static)
    for (int64_t t = 0; t < T; ++t) {
        const double* ct = cs + t * half;
        const double* st = sn + t * half;
        for (int64_t h = 0; h < H; ++h) {
            float* xh = x + (t * H + h) * Dh;
            for (int64_t i = 0; i < half; ++i) {
                float* pa = xh + i * first_step;
                float* pb = pa + partner;
                const double a = *pa, b = *pb;
                *pa = static_cast<float>(a * ct[i] - b * st[i]);
                *pb = static_cast<float>(a * st[i] + b * ct[i]);
            }
        }
    }
}

void rope(float* x, const int32_t* positions, int64_t T, int64_t H, int64_t Dh, int64_t n_rot,
          double theta, int style, int threads) {
    const int64_t half = n_rot / 2;
    if (T == 0 || half == 0) return;
    std::vector<double> cs(static_cast<size_t>(T * half)), sn(static_cast<size_t>(T * half));
    rope_angles(positions, T, n_rot, theta, cs.data(), sn.data());
    rope_rotate(x, cs.data(), sn.data(), T, H, Dh, n_rot, style, threads);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n, int threads, const DotTable* dots) {
    const SiluMul fast = dots != nullptr ? dots->silu_mul : nullptr;
    const int team = team_for(n, threads);
    if (fast != nullptr) {
        // one contiguous run per thread, cut at multiples of 8 values
        const int64_t per = ((n + team - 1) / team + 7) / 8 * 8;
#pragma omp parallel for num_threads(team) schedule(static)
        for (int part = 0; part < team; ++part) {
            const int64_t i0 = std::min<int64_t>(n, part * per), i1 = std::min<int64_t>(n, i0 + per);
            if (i1 > i0) fast(gate + i0, up + i0, out + i0, i1 - i0);
        }
        return;
    }
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

}  // namespace edgegen
