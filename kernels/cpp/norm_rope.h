// Row normalisation, rotary position embedding and the SwiGLU gate: elementwise-ish kernels
// over float32 C-contiguous activations.
#pragma once

#include <cstdint>

namespace edgegen {

struct DotTable;

// Rotary styles (edgegen.constants.RopeStyle).
enum RopeStyleId : int {
    kRopeNormal = 0,  // rotate adjacent pairs (x[2i], x[2i+1])
    kRopeNeox = 2,    // rotate halves (x[i], x[i + n_rot/2])
};

// out = x / sqrt(mean(x^2) + eps) * weight per row; x, out (T, D), weight (D,). out may be x.
void rmsnorm(const float* x, const float* weight, double eps, float* out, int64_t T, int64_t D, int threads);

// Rotates the first n_rot dims of every head of x (T, H, Dh) in place; pair i turns by
// positions[t] * theta^(-2i/n_rot). n_rot even, <= Dh.
void rope(float* x, const int32_t* positions, int64_t T, int64_t H, int64_t Dh, int64_t n_rot,
          double theta, int style, int threads);

// The two halves of rope, for callers that rotate several tensors at the same positions:
// cs, sn (T, n_rot/2) = cos, sin of positions[t] * theta^(-2i/n_rot); then the rotation.
void rope_angles(const int32_t* positions, int64_t T, int64_t n_rot, double theta, double* cs, double* sn);
void rope_rotate(float* x, const double* cs, const double* sn, int64_t T, int64_t H, int64_t Dh, int64_t n_rot,
                 int style, int threads);

// out = silu(gate) * up elementwise over n values; out may be gate or up.
// dots: the table whose silu_mul runs it (nullptr or none in the table: the portable loop).
void swiglu(const float* gate, const float* up, float* out, int64_t n, int threads, const DotTable* dots = nullptr);

}  // namespace edgegen
