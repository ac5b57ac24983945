// Causal grouped-query attention of T new queries over a KV cache.
#pragma once

#include <cstdint>

#include "vec_dot.h"

namespace edgegen {

// q (T, Hq, Dh); k_cache, v_cache (Hkv, C, Dh); out (T, Hq, Dh); all float32 C-contiguous.
// Query t sits at position pos0 + t and sees cache rows 0 .. pos0 + t; head h reads KV head
// h / (Hq / Hkv). Requires Hq % Hkv == 0 and pos0 + T <= C (checked by the caller).
// `dots` supplies the SIMD float dot (q . k) and axpy (the weighted sum of values); nullptr
// runs the portable loops.
void attention(const float* q, const float* k_cache, const float* v_cache, int64_t T, int64_t Hq,
               int64_t Hkv, int64_t C, int64_t Dh, int64_t pos0, float scale, float* out, int threads,
               const DotTable* dots);

}  // namespace edgegen
