// Parity check of the NEON dot products (kDotNeon) against the scalar table (kDotScalar), and of
// both against a float64 reference built from the block decoders (quant_formats.cpp). Built for
// AArch64 and run under qemu by tools/check_neon.sh; needs no Python.
//
// Every format is tried at several row lengths, on rows of random block bytes (small f16
// scales), some rows at an odd address, with three kinds of activations:
//   quantized  random floats through quantize_q8 / quantize_q8k (one all-zero block if n allows)
//   raw        random activation bytes, -128 included, sum / bsums recomputed
//   extreme    every weight and activation integer at the magnitude that stresses the
//              int16 / int32 partial sums most (Q8_0 -128 x -128, ...)
// Error = |a - b| / sum_k |w_k * x_k|; the check fails when any exceeds kTolerance.
//
// usage: neon_check [seed]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "act_quant.h"
#include "block_layout.h"
#include "common.h"
#include "quant_formats.h"
#include "vec_dot.h"

#if !defined(__aarch64__)
#error "neon_check runs the NEON table: build it for AArch64 (tools/check_neon.sh)"
#endif

namespace edgegen {
namespace {

constexpr double kTolerance = 1e-4;
constexpr int kTrialsPerLength = 9;  // three of each activation kind
constexpr uint64_t kDefaultSeed = 20240611;

enum class Act { kQ8, kQ8K, kFloat };
enum class Mode { kQuantized = 0, kRaw = 1, kExtreme = 2 };
constexpr const char* kModeNames[] = {"quantized", "raw", "extreme"};

struct FormatCase {
    QType qtype;
    Act act;
    std::vector<int64_t> lengths;  // values per row
};

const FormatCase kCases[] = {
    {kQ8_0, Act::kQ8, {32, 64, 160, 2048, 4128}},
    {kQ4_0, Act::kQ8, {32, 64, 160, 2048, 4128}},
    {kQ4_1, Act::kQ8, {32, 64, 160, 2048, 4128}},
    {kQ4_K, Act::kQ8K, {256, 512, 1280, 4096, 11008}},
    {kQ6_K, Act::kQ8K, {256, 512, 1280, 4096, 11008}},
    {kF32, Act::kFloat, {1, 7, 16, 17, 31, 100, 576, 4099}},
    {kF16, Act::kFloat, {1, 7, 16, 17, 31, 100, 576, 4099}},
    {kBF16, Act::kFloat, {1, 7, 16, 17, 31, 100, 576, 4099}},
};

using Rng = std::mt19937_64;

int rand_int(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
uint8_t rand_byte(Rng& rng) { return static_cast<uint8_t>(rand_int(rng, 0, 255)); }

void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }

// A block scale: +-2^-10 .. 2^-3 with a random mantissa (IEEE half: 1 sign, 5 exponent, 10 mantissa).
uint16_t small_f16_scale(Rng& rng) {
    return static_cast<uint16_t>((rand_int(rng, 0, 1) << 15) | (rand_int(rng, 5, 12) << 10) | rand_int(rng, 0, 1023));
}

// Any finite half: zeros, subnormals, normals up to 65504.
uint16_t any_finite_f16(Rng& rng) {
    return static_cast<uint16_t>((rand_int(rng, 0, 1) << 15) | (rand_int(rng, 0, 30) << 10) | rand_int(rng, 0, 1023));
}

// A bfloat16 (1 sign, 8 exponent, 7 mantissa) within 2^+-24. No subnormals: their float32
// products underflow in both tables alike, which would test float32, not the kernels.
uint16_t moderate_bf16(Rng& rng) {
    const int exponent = rand_int(rng, 127 - 24, 127 + 24);
    return static_cast<uint16_t>((rand_int(rng, 0, 1) << 15) | (exponent << 7) | rand_int(rng, 0, 127));
}

// ---- weight rows ---------------------------------------------------------------------------

// Fills one block of `qtype` at p: scales small f16, every other byte random (or, for kExtreme,
// the byte that gives the largest integer products).
void fill_block(QType qtype, Mode mode, uint8_t* p, Rng& rng) {
    const bool extreme = mode == Mode::kExtreme;
    switch (qtype) {
        case kQ8_0:  // d, qs: -128 everywhere when extreme
            store_u16(p, small_f16_scale(rng));
            for (int64_t j = 0; j < kQK; ++j) p[2 + j] = extreme ? 0x80 : rand_byte(rng);
            break;
        case kQ4_0:  // d, qs: nibbles 0 (value -8) when extreme
            store_u16(p, small_f16_scale(rng));
            for (int64_t j = 0; j < kQK / 2; ++j) p[2 + j] = extreme ? 0x00 : rand_byte(rng);
            break;
        case kQ4_1:  // d, m, qs: nibbles 15 everywhere when extreme (the largest unsigned products)
            store_u16(p, small_f16_scale(rng));
            store_u16(p + 2, small_f16_scale(rng));
            for (int64_t j = 0; j < kQK / 2; ++j) p[4 + j] = extreme ? 0xFF : rand_byte(rng);
            break;
        case kQ4_K:  // d, dmin, scales (any 12 bytes are valid), qs: all 0xFF when extreme
            store_u16(p, small_f16_scale(rng));
            store_u16(p + 2, small_f16_scale(rng));
            for (int64_t j = kQ4_KScalesOff; j < kQ4_KBytes; ++j) p[j] = extreme ? 0xFF : rand_byte(rng);
            break;
        case kQ6_K:  // ql, qh (q6 = 0, value -32 when extreme), scales (-128 when extreme), d
            for (int64_t j = 0; j < kQ6_KScalesOff; ++j) p[j] = extreme ? 0x00 : rand_byte(rng);
            for (int64_t j = kQ6_KScalesOff; j < kQ6_KDOff; ++j) p[j] = extreme ? 0x80 : rand_byte(rng);
            store_u16(p + kQ6_KDOff, small_f16_scale(rng));
            break;
        case kF32: {
            const float v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
            std::memcpy(p, &v, sizeof v);
            break;
        }
        case kF16: store_u16(p, any_finite_f16(rng)); break;
        case kBF16: store_u16(p, moderate_bf16(rng)); break;
        default: std::fprintf(stderr, "neon_check: no block filler for qtype %d\n", qtype); std::exit(2);
    }
}

// ---- activations ---------------------------------------------------------------------------

struct Activations {
    std::vector<float> x;       // float formats: the input; block formats: d*q, the dequantized blocks
    std::vector<BlockQ8> q8;
    std::vector<BlockQ8K> q8k;
};

void fill_raw_qs(int8_t* qs, int64_t n, Mode mode, Rng& rng) {
    for (int64_t j = 0; j < n; ++j) qs[j] = mode == Mode::kExtreme ? -128 : static_cast<int8_t>(rand_byte(rng));
}

Activations make_activations(Act act, Mode mode, int64_t n, Rng& rng) {
    Activations a;
    a.x.resize(n);
    const float scale = std::pow(10.0f, std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng));
    for (float& v : a.x) v = scale * std::normal_distribution<float>(0.0f, 1.0f)(rng);
    if (act == Act::kFloat) return a;

    const int64_t bv = act == Act::kQ8 ? kQ8Values : kQ8KValues;
    if (mode == Mode::kQuantized && n >= 2 * bv) std::fill(a.x.begin() + bv, a.x.begin() + 2 * bv, 0.0f);
    if (act == Act::kQ8) {
        a.q8.resize(n / bv);
        quantize_q8(a.x.data(), a.q8.data(), n);
        if (mode != Mode::kQuantized) {
            for (BlockQ8& b : a.q8) {  // sum recomputed: Q4_1's dots read it
                fill_raw_qs(b.qs, kQ8Values, mode, rng);
                b.sum = 0;
                for (int64_t j = 0; j < kQ8Values; ++j) b.sum += b.qs[j];
            }
        }
        for (int64_t i = 0; i < n; ++i) a.x[i] = a.q8[i / bv].d * a.q8[i / bv].qs[i % bv];
    } else {
        a.q8k.resize(n / bv);
        quantize_q8k(a.x.data(), a.q8k.data(), n);
        if (mode != Mode::kQuantized) {
            for (BlockQ8K& b : a.q8k) {
                fill_raw_qs(b.qs, kQ8KValues, mode, rng);
                for (int64_t g = 0; g < kQ8KGroups; ++g) {
                    int s = 0;
                    for (int64_t j = 0; j < 16; ++j) s += b.qs[16 * g + j];
                    b.bsums[g] = static_cast<int16_t>(s);
                }
            }
        }
        for (int64_t i = 0; i < n; ++i) a.x[i] = a.q8k[i / bv].d * a.q8k[i / bv].qs[i % bv];
    }
    return a;
}

// ---- one row -------------------------------------------------------------------------------

float run_table(const DotTable& t, QType qtype, const uint8_t* w, const Activations& a, int64_t n) {
    switch (qtype) {
        case kQ8_0: return t.q8_0(w, a.q8.data(), n);
        case kQ4_0: return t.q4_0(w, a.q8.data(), n);
        case kQ4_1: return t.q4_1(w, a.q8.data(), n);
        case kQ4_K: return t.q4_k(w, a.q8k.data(), n);
        case kQ6_K: return t.q6_k(w, a.q8k.data(), n);
        case kF32: return t.f32(w, a.x.data(), n);
        case kF16: return t.f16(w, a.x.data(), n);
        case kBF16: return t.bf16(w, a.x.data(), n);
        default: std::fprintf(stderr, "neon_check: no table entry for qtype %d\n", qtype); std::exit(2);
    }
}

struct Errors {
    double neon_scalar = 0.0, scalar_ref = 0.0, neon_ref = 0.0;
    int rows = 0, same_bits = 0;
};

double relative(double a, double b, double scale) {
    const double diff = std::fabs(a - b);
    if (diff == 0.0) return 0.0;
    return scale > 0.0 ? diff / scale : INFINITY;  // also catches NaN results (diff NaN -> NaN > tol is false)
}

void check_row(const FormatCase& c, const QuantFormat& fmt, int64_t n, Mode mode, bool odd_address, Rng& rng, Errors* e) {
    // 1. weights (one byte of lead-in when odd_address) and activations
    std::vector<uint8_t> buf(fmt.row_bytes(n) + 1);
    uint8_t* w = buf.data() + (odd_address ? 1 : 0);
    for (int64_t b = 0; b < n / fmt.block_values; ++b) fill_block(c.qtype, mode, w + b * fmt.block_bytes, rng);
    const Activations a = make_activations(c.act, mode, n, rng);

    // 2. float64 reference from the decoded weights
    std::vector<float> wd(n);
    fmt.decode(w, wd.data(), n);
    double ref = 0.0, scale = 0.0;
    for (int64_t k = 0; k < n; ++k) {
        ref += static_cast<double>(wd[k]) * a.x[k];
        scale += std::fabs(static_cast<double>(wd[k]) * a.x[k]);
    }

    // 3. both tables
    const float neon = run_table(kDotNeon, c.qtype, w, a, n);
    const float scalar = run_table(kDotScalar, c.qtype, w, a, n);
    auto worst = [](double* slot, double err) { *slot = (std::isnan(err) || err > *slot) ? err : *slot; };
    worst(&e->neon_scalar, std::isfinite(neon) && std::isfinite(scalar) ? relative(neon, scalar, scale) : NAN);
    worst(&e->scalar_ref, std::isfinite(scalar) ? relative(scalar, ref, scale) : NAN);
    worst(&e->neon_ref, std::isfinite(neon) ? relative(neon, ref, scale) : NAN);
    e->rows += 1;
    e->same_bits += std::memcmp(&neon, &scalar, sizeof neon) == 0;
}

bool passes(double err) { return err <= kTolerance; }  // false for NaN

}  // namespace
}  // namespace edgegen

int main(int argc, char** argv) {
    using namespace edgegen;
    const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : kDefaultSeed;
    Rng rng(seed);
    std::printf("neon_check: kDotNeon vs kDotScalar, seed %llu, tolerance %.0e of sum|w*x|\n",
                static_cast<unsigned long long>(seed), kTolerance);
    std::printf("activation kinds per length: %s, %s, %s (x%d); odd-address rows every other trial\n",
                kModeNames[0], kModeNames[1], kModeNames[2], kTrialsPerLength / 3);
    std::printf("%-6s %5s  %-14s %-14s %-14s %s\n", "format", "rows", "neon-scalar", "scalar-ref64", "neon-ref64", "same bits");

    bool ok = true;
    for (const FormatCase& c : kCases) {
        const QuantFormat* fmt = find_format(c.qtype);
        if (fmt == nullptr) {
            std::fprintf(stderr, "neon_check: quant_formats.cpp has no format %d\n", c.qtype);
            return 2;
        }
        Errors e;
        for (int64_t n : c.lengths) {
            for (int t = 0; t < kTrialsPerLength; ++t) check_row(c, *fmt, n, static_cast<Mode>(t % 3), t % 2 == 1, rng, &e);
        }
        const bool row_ok = passes(e.neon_scalar) && passes(e.scalar_ref) && passes(e.neon_ref);
        ok = ok && row_ok;
        std::printf("%-6s %5d  %-14.3e %-14.3e %-14.3e %d/%d%s\n", fmt->name, e.rows, e.neon_scalar, e.scalar_ref,
                    e.neon_ref, e.same_bits, e.rows, row_ok ? "" : "   FAIL");
    }
    std::printf(ok ? "PASS\n" : "FAIL: an error above exceeds the tolerance\n");
    return ok ? 0 : 1;
}
