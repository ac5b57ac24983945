// The F16C half -> float of one stored value, for the files built with -mf16c (vec_dot_avx2.cpp,
// gemm_avx2.cpp). Internal linkage, like everything those files include (see vec_dot_avx2.cpp).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace edgegen {
namespace {

inline float half_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

}  // namespace
}  // namespace edgegen
