// GGML tensor types the kernels read, and one block decoder per type.
// Block layouts (little endian, f16 = IEEE half), as in kernels/quants.py and ggml:
//   Q8_0  32 values, 34 bytes:  d:f16, qs:int8[32]                    x = d*q
//   Q4_0  32 values, 18 bytes:  d:f16, qs:u8[16]                      x = d*(nibble-8)
//   Q4_1  32 values, 20 bytes:  d:f16, m:f16, qs:u8[16]               x = d*nibble + m
//   Q4_K 256 values, 144 bytes: d:f16, dmin:f16, scales:u8[12], qs:u8[128]
//   Q6_K 256 values, 210 bytes: ql:u8[128], qh:u8[64], scales:int8[16], d:f16
// Float types (F32, F16, BF16) are "blocks" of one value.
#pragma once

#include <cstdint>
#include <string>

namespace edgegen {

// GGMLType values (gguf.GGMLQuantizationType).
enum QType : int {
    kF32 = 0,
    kF16 = 1,
    kQ4_0 = 2,
    kQ4_1 = 3,
    kQ8_0 = 8,
    kQ4_K = 12,
    kQ6_K = 14,
    kBF16 = 30,
};

// Decodes `n` values (a whole number of blocks) starting at a block boundary `src` into `dst`.
// The arithmetic matches kernels/quants.py bit for bit.
using DecodeFn = void (*)(const uint8_t* src, float* dst, int64_t n);

struct QuantFormat {
    int qtype;
    const char* name;
    int64_t block_values;
    int64_t block_bytes;
    DecodeFn decode;

    int64_t row_bytes(int64_t cols) const { return cols / block_values * block_bytes; }
};

// The format of `qtype`, or nullptr when the kernels do not run it.
const QuantFormat* find_format(int qtype);

// "F32(0), F16(1), ...": for error messages.
std::string supported_formats();

}  // namespace edgegen
