// Byte layout of the GGUF block formats: the one place the decoders (quant_formats.cpp) and
// the dot products (vec_dot_*.cpp) take offsets and sizes from. Little endian, f16 = IEEE half.
//   Q8_0  32 values, 34 bytes:  d:f16, qs:int8[32]                    x = d*q
//   Q4_0  32 values, 18 bytes:  d:f16, qs:u8[16]                      x = d*(nibble-8); low nibbles
//                                                                     are values 0..15, high 16..31
//   Q4_1  32 values, 20 bytes:  d:f16, m:f16, qs:u8[16]               x = d*nibble + m
//   Q4_K 256 values, 144 bytes: d:f16, dmin:f16, scales:u8[12], qs:u8[128]
//                               x = d*sc[s]*nibble - dmin*m[s] for sub-block s of 32 values;
//                               64-value chunk c: sub-block 2c in the low nibbles of qs[32c..],
//                               2c+1 in the high nibbles
//   Q6_K 256 values, 210 bytes: ql:u8[128], qh:u8[64], scales:int8[16], d:f16
//                               x = d*scales[v/16]*(q6-32); see q6_k_quarter below
// Everything here has internal linkage (static / anonymous namespace): the SIMD files include
// it while compiled with wider instruction sets, and no copy of theirs may stand in for the
// portable one at link time.
#pragma once

#include <cstdint>
#include <cstring>

namespace edgegen {
namespace {

constexpr int64_t kQK = 32;       // values per Q8_0 / Q4_0 / Q4_1 block
constexpr int64_t kQK_K = 256;    // values per K-quant super-block
constexpr int kNibbleMask = 0x0F;
constexpr int kNibbleBits = 4;
constexpr int kQ4Offset = 8;      // Q4_0 nibbles are stored offset by 8
constexpr int kQ6Offset = 32;     // Q6_K six-bit values are stored offset by 32
constexpr int kSixBitMask = 0x3F;
constexpr int kTwoBitMask = 0x03;

constexpr int64_t kQ8_0Bytes = 2 + kQK;          // d, qs
constexpr int64_t kQ4_0Bytes = 2 + kQK / 2;      // d, qs
constexpr int64_t kQ4_1Bytes = 2 + 2 + kQK / 2;  // d, m, qs

constexpr int64_t kQ4_KScalesOff = 4;     // after d, dmin
constexpr int64_t kQ4_KQsOff = 4 + 12;    // after d, dmin, 12 scale bytes
constexpr int64_t kQ4_KBytes = kQ4_KQsOff + kQK_K / 2;
constexpr int64_t kQ4_KChunk = 64;        // values sharing one 32-byte run of qs
constexpr int kQ4_KSubBlocks = 8;

constexpr int64_t kQ6_KQhOff = kQK_K / 2;                    // after ql[128]
constexpr int64_t kQ6_KScalesOff = kQ6_KQhOff + kQK_K / 4;   // after qh[64]
constexpr int64_t kQ6_KScales = kQK_K / 16;                  // one int8 scale per 16 values
constexpr int64_t kQ6_KDOff = kQ6_KScalesOff + kQ6_KScales;  // d:f16 comes last
constexpr int64_t kQ6_KBytes = kQ6_KDOff + 2;
constexpr int64_t kQ6_KHalf = 128;                           // values per half super-block
constexpr int64_t kQ6_KRun = 32;                             // values per quarter of a half
// Quarter g (0..3) of half h: values 128h + 32g + l (l < 32) take their low 4 bits from
// ql[64h + 32(g%2) + l] (low nibble if g < 2, else high) and their top 2 bits from bits
// 2g..2g+1 of qh[32h + l]; value v has scale scales[v / 16].

static_assert(kQ4_KBytes == 144 && kQ6_KBytes == 210, "K-quant block sizes must match ggml");

// The eight six-bit scales and eight mins of a Q4_K block from its 12 packed bytes: bytes 0..3
// hold scales 0..3 (+ in bits 6..7 the top bits of scales 4..7), bytes 4..7 mins 0..3 (+ the
// top bits of mins 4..7), bytes 8..11 the low nibbles of scales (low) and mins (high) 4..7.
// Unpacked four entries at a time in 32-bit words (little endian, as every kernel reads).
inline void q4_k_unpack(const uint8_t* s, uint8_t sc[kQ4_KSubBlocks], uint8_t mn[kQ4_KSubBlocks]) {
    constexpr uint32_t kLow6 = 0x3F3F3F3Fu, kLow4 = 0x0F0F0F0Fu, kLow2 = 0x03030303u;
    constexpr int kTopShift = 6;  // bits 6..7 of bytes 0..7 are the top two bits of entries 4..7
    uint32_t u[3];
    std::memcpy(u, s, sizeof u);
    const uint32_t v[4] = {
        u[0] & kLow6,                                                               // scales 0..3
        (u[2] & kLow4) | (((u[0] >> kTopShift) & kLow2) << kNibbleBits),            // scales 4..7
        u[1] & kLow6,                                                               // mins 0..3
        ((u[2] >> kNibbleBits) & kLow4) | (((u[1] >> kTopShift) & kLow2) << kNibbleBits),  // mins 4..7
    };
    std::memcpy(sc, v, kQ4_KSubBlocks);
    std::memcpy(mn, v + 2, kQ4_KSubBlocks);
}

}  // namespace
}  // namespace edgegen
