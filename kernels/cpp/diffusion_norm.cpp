// Norms and elementwise kernels of the native diffusion models (diffusion.h): GroupNorm (+SiLU),
// LayerNorm, GEGLU, SiLU and the fused guidance + scheduler step. Statistics are summed in double
// in a fixed order (independent of the thread count); exponentials go through the table's
// exp_shift (exp of non-positive values, 8 at a time) where it has one.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "diffusion.h"
#include "diffusion_simd.h"

namespace edgegen {
namespace {

constexpr int64_t kRun = 256;              // values per stack buffer in the elementwise kernels
constexpr int64_t kStatBlocks = 64;        // GroupNorm: pixel blocks summed separately, then in order

// e[i] = exp(e[i]) for e[i] <= 0
void exp_inplace(float* e, int64_t n, ExpShift exp_shift) {
    if (exp_shift != nullptr) {
        exp_shift(e, 0.0f, n);
    } else {
        for (int64_t i = 0; i < n; ++i) e[i] = std::exp(e[i]);
    }
}

// out = x * sigmoid(x) with e = exp(-|x|) <= 1 (no overflow for any x)
void silu_run(const float* x, float* out, int64_t n, ExpShift exp_shift) {
    for (int64_t i0 = 0; i0 < n; i0 += kRun) {
        const int64_t len = std::min(kRun, n - i0);
        float e[kRun];
        for (int64_t i = 0; i < len; ++i) e[i] = -std::fabs(x[i0 + i]);
        exp_inplace(e, len, exp_shift);
        for (int64_t i = 0; i < len; ++i) {
            const float v = x[i0 + i];
            out[i0 + i] = v * ((v >= 0.0f ? 1.0f : e[i]) / (1.0f + e[i]));
        }
    }
}

// gelu(g) = 0.5 g erfc(-g / sqrt 2), erfc by Numerical Recipes' erfcc (Chebyshev fit, relative
// error < 1.2e-7 for every argument): erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a / 2), a >= 0;
// erfc(-a) = 2 - erfc(a). Relative accuracy holds on both tails.
void gelu_mul_run(const float* g, const float* u, float* out, int64_t n, ExpShift exp_shift) {
    for (int64_t i0 = 0; i0 < n; i0 += kRun) {
        const int64_t len = std::min(kRun, n - i0);
        float e[kRun], tt[kRun];
        for (int64_t i = 0; i < len; ++i) {
            const float a = std::fabs(g[i0 + i]) * 0.70710678118654752f;
            const float t = 1.0f / (1.0f + 0.5f * a);
            const float p = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
                            t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
                            t * (-0.82215223f + t * 0.17087277f))))))));
            e[i] = std::min(0.0f, p - a * a);
            tt[i] = t;
        }
        exp_inplace(e, len, exp_shift);
        for (int64_t i = 0; i < len; ++i) {
            const float v = g[i0 + i], ec = tt[i] * e[i];
            out[i0 + i] = u[i0 + i] * (0.5f * v * (v >= 0.0f ? 2.0f - ec : ec));
        }
    }
}

using SiluFn = void (*)(const float* x, float* out, int64_t n, ExpShift exp_shift);
using GeluMulFn = void (*)(const float* g, const float* u, float* out, int64_t n, ExpShift exp_shift);

#if defined(__x86_64__) || defined(_M_X64)
void silu_avx2_run(const float* x, float* out, int64_t n, ExpShift) { silu_avx2(x, out, n); }
void gelu_mul_avx2_run(const float* g, const float* u, float* out, int64_t n, ExpShift) { gelu_mul_avx2(g, u, out, n); }
#endif

// The AVX2 loops where the table is AVX2's, the portable ones otherwise.
SiluFn silu_for(const DotTable& dots) {
#if defined(__x86_64__) || defined(_M_X64)
    if (dots.isa == Isa::kAvx2) return silu_avx2_run;
#endif
    (void)dots;
    return silu_run;
}

GeluMulFn gelu_mul_for(const DotTable& dots) {
#if defined(__x86_64__) || defined(_M_X64)
    if (dots.isa == Isa::kAvx2) return gelu_mul_avx2_run;
#endif
    (void)dots;
    return gelu_mul_run;
}

}  // namespace

void group_norm(const float* x, int64_t B, int64_t P, int64_t C, int64_t groups, const float* gamma,
                const float* beta, double eps, bool silu, float* out, int threads, const DotTable& dots) {
    if (B * P * C == 0) return;
    const int64_t nblk = std::min(P, kStatBlocks), per = (P + nblk - 1) / nblk, cg = C / groups;
    const int team = team_for(B * P * C, threads);
    std::vector<double> part(static_cast<size_t>(B * nblk * C * 2));  // [b][block][sum C | sumsq C]
    std::vector<float> mean(static_cast<size_t>(B * C)), scale(static_cast<size_t>(B * C));
    const SiluFn silu_fn = silu_for(dots);
#pragma omp parallel num_threads(team)
    {
#pragma omp for schedule(static)
        for (int64_t item = 0; item < B * nblk; ++item) {
            const int64_t b = item / nblk, p0 = item % nblk * per, p1 = std::min(P, p0 + per);
            double* s = part.data() + item * C * 2;
            double* q = s + C;
            for (int64_t p = p0; p < p1; ++p) {
                const float* r = x + (b * P + p) * C;
                for (int64_t c = 0; c < C; ++c) {
                    const double v = r[c];
                    s[c] += v, q[c] += v * v;
                }
            }
        }
#pragma omp single
        for (int64_t b = 0; b < B; ++b) {
            for (int64_t g = 0; g < groups; ++g) {
                double s = 0.0, q = 0.0;
                for (int64_t blk = 0; blk < nblk; ++blk) {
                    const double* ps = part.data() + (b * nblk + blk) * C * 2;
                    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) s += ps[c], q += ps[C + c];
                }
                const double n = static_cast<double>(P * cg), m = s / n;
                const double rstd = 1.0 / std::sqrt(std::max(0.0, q / n - m * m) + eps);
                for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
                    mean[b * C + c] = static_cast<float>(m);
                    scale[b * C + c] = static_cast<float>(rstd * gamma[c]);
                }
            }
        }
#pragma omp for schedule(static)
        for (int64_t row = 0; row < B * P; ++row) {
            const float* m = mean.data() + row / P * C;
            const float* a = scale.data() + row / P * C;
            const float* r = x + row * C;
            float* o = out + row * C;
            for (int64_t c = 0; c < C; ++c) o[c] = (r[c] - m[c]) * a[c] + beta[c];
            if (silu) silu_fn(o, o, C, dots.exp_shift);
        }
    }
}

void layer_norm(const float* x, int64_t T, int64_t D, const float* gamma, const float* beta, double eps,
                float* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(team_for(T * D, threads))
    for (int64_t t = 0; t < T; ++t) {
        const float* r = x + t * D;
        double s = 0.0, q = 0.0;
        for (int64_t i = 0; i < D; ++i) s += r[i], q += static_cast<double>(r[i]) * r[i];
        const double m = s / static_cast<double>(D);
        const double rstd = 1.0 / std::sqrt(std::max(0.0, q / static_cast<double>(D) - m * m) + eps);
        const float mf = static_cast<float>(m), rf = static_cast<float>(rstd);
        float* o = out + t * D;
        for (int64_t i = 0; i < D; ++i) o[i] = (r[i] - mf) * rf * gamma[i] + beta[i];
    }
}

void geglu(const float* x, int64_t T, int64_t F, float* out, int threads, const DotTable& dots) {
    const GeluMulFn gelu_mul = gelu_mul_for(dots);
#pragma omp parallel for schedule(static) num_threads(team_for(T * F * 8, threads))
    for (int64_t t = 0; t < T; ++t) gelu_mul(x + t * 2 * F + F, x + t * 2 * F, out + t * F, F, dots.exp_shift);
}

void silu(const float* x, int64_t n, float* out, int threads, const DotTable& dots) {
    const int64_t runs = (n + kRun - 1) / kRun;
    const SiluFn silu_fn = silu_for(dots);
#pragma omp parallel for schedule(static) num_threads(team_for(n * 4, threads))
    for (int64_t r = 0; r < runs; ++r) silu_fn(x + r * kRun, out + r * kRun, std::min(kRun, n - r * kRun), dots.exp_shift);
}

void guided_update(const float* x, const float* uncond, const float* cond, float scale, float cx, float cout,
                   const float* noise, float cnoise, float* out, int64_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(team_for(n, threads))
    for (int64_t i = 0; i < n; ++i) {
        const float eps = uncond[i] + scale * (cond[i] - uncond[i]);
        float v = cx * x[i] + cout * eps;
        if (noise != nullptr) v += cnoise * noise[i];
        out[i] = v;
    }
}

}  // namespace edgegen
