// Kernels of the native diffusion models (UNet, VAE, CLIP text encoder): float32, channels-last
// (images (B, H, W, C), sequences (B, N, C)), OpenMP over `threads`. Shapes are checked by the
// caller (binding_diffusion.cpp); references in kernels/diffusion_ref.py.
#pragma once

#include <cstdint>

#include "quant_formats.h"
#include "vec_dot.h"

namespace edgegen {

struct Conv2dShape {
    int64_t B, H, W, Cin;    // input (before upsampling)
    int64_t Cout, kh, kw;    // weight (Cout, kh * kw * Cin) in (kh, kw, Cin) order
    int64_t stride, pad_top, pad_bottom, pad_left, pad_right;
    int64_t upsample;        // 1, or 2: nearest upsampling folded into the patch gather
    int64_t Ho, Wo;          // output
};

// out (B, Ho, Wo, Cout) = conv(upsample(x), W) + bias: patches of a band of output pixels are
// gathered straight into the GEMM's transposed token blocks (bounded scratch) and multiplied on
// the table's register tile against decoded weight chunks; the sum over k runs in (kh, kw, Cin)
// order. bias may be nullptr.
void conv2d(const float* x, const QuantFormat& fmt, const uint8_t* w, const float* bias, const Conv2dShape& s,
            float* out, int threads, const DotTable& dots);

// GroupNorm over x (B, P, C): statistics in double per (batch, group of C / groups channels),
// then y * gamma + beta, then SiLU if asked. out may be x.
void group_norm(const float* x, int64_t B, int64_t P, int64_t C, int64_t groups, const float* gamma,
                const float* beta, double eps, bool silu, float* out, int threads, const DotTable& dots);

// LayerNorm over the rows of x (T, D), statistics in double. out may be x.
void layer_norm(const float* x, int64_t T, int64_t D, const float* gamma, const float* beta, double eps,
                float* out, int threads);

// softmax(q k^T / sqrt(Dh)) v per (batch, head): q (B, Nq, H*Dh), k, v (B, Nk, H*Dh), out (B, Nq, H*Dh).
// Scores are held for at most `chunk` query rows at a time per thread (0: all). causal: query i
// sees keys 0..i.
void mh_attention(const float* q, const float* k, const float* v, int64_t B, int64_t Nq, int64_t Nk,
                  int64_t heads, int64_t Dh, bool causal, int64_t chunk, float* out, int threads,
                  const DotTable& dots);

// out (T, F) = x[:, :F] * gelu_erf(x[:, F:]) for x (T, 2F).
void geglu(const float* x, int64_t T, int64_t F, float* out, int threads, const DotTable& dots);

// out = x * sigmoid(x) over n values; out may be x.
void silu(const float* x, int64_t n, float* out, int threads, const DotTable& dots);

// out = cx * x + cout * (uncond + scale * (cond - uncond)) + cnoise * noise (noise may be nullptr).
void guided_update(const float* x, const float* uncond, const float* cond, float scale, float cx, float cout,
                   const float* noise, float cnoise, float* out, int64_t n, int threads);

}  // namespace edgegen
