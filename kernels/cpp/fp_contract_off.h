// Include first in a file whose arithmetic must round every product before the following add
// (bit-exactness with kernels/quants.py): forbids fusing `a*b + c` into an FMA on targets that
// have one (aarch64, x86 with -mfma) for every function after it in the file. Explicit FMA
// intrinsics are unaffected.
#pragma once

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
