// Run-time choice of the dot-product table from the CPU's features.
#include "vec_dot.h"

#include <initializer_list>

namespace edgegen {

const DotTable* dot_table(Isa isa) {
    switch (isa) {
        case Isa::kScalar:
            return &kDotScalar;
        case Isa::kAvx2:
#if defined(__x86_64__) || defined(_M_X64)
            // the AVX2 file also uses FMA and F16C; all three must be there
            if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
                return &kDotAvx2;
            }
#endif
            return nullptr;
        case Isa::kNeon:
#if defined(__aarch64__)
            return &kDotNeon;  // Advanced SIMD is part of every AArch64 CPU
#else
            return nullptr;
#endif
    }
    return nullptr;
}

Isa best_isa() {
    for (Isa isa : {Isa::kAvx2, Isa::kNeon}) {
        if (dot_table(isa) != nullptr) return isa;
    }
    return Isa::kScalar;
}

}  // namespace edgegen
