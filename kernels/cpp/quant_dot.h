// Matrix products and row lookups directly on GGUF weight bytes (no dequantized copy).
// Weights w: N rows of fmt.row_bytes(K) bytes each, row-major, K a whole number of blocks.
#pragma once

#include <cstdint>

#include "quant_formats.h"
#include "vec_dot.h"

namespace edgegen {

// out[t, n] = sum_k W[n, k] * x[t, k];  x (T, K) float32, out (T, N) float32, all C-contiguous.
// With a dot table: block formats take x quantized to 8 bits, through the table's integer dots
// (float formats: float32 x); with dots == nullptr: every format decoded to float32 (exact path).
void matmul(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t T, float* out,
            int threads, const DotTable* dots);

// The exact path: weights decoded chunk by chunk, dotted with float32 x.
void matmul_decoded(const QuantFormat& fmt, const uint8_t* w, int64_t N, int64_t K,
                    const float* x, int64_t T, float* out, int threads);

// out[t] = W[ids[t]];  ids (T,) each in [0, N) (checked by the caller), out (T, K).
void get_rows(const QuantFormat& fmt, const uint8_t* w, int64_t K,
              const int32_t* ids, int64_t T, float* out, int threads);

}  // namespace edgegen
