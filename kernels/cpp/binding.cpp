// Python bindings of the edgegen C++ kernels (module edgegen.kernels._cpp).
//
// Every function follows kernels/ref.py: arrays in, caller-allocated `out` written, nothing
// returned. This file is the boundary: it checks what Python hands over (device, dtype, ndim,
// shape, C-contiguity, overlap, index ranges, scalar ranges) and raises ValueError naming the
// argument, what was expected and what was found; then it releases the GIL and calls the
// kernel with plain pointers. Arrays are used in place, never copied.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <nanobind/stl/string.h>

#include "attention.h"
#include "decoder.h"
#include "norm_rope.h"
#include "quant_dot.h"
#include "quant_formats.h"
#include "vec_dot.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using InArray = nb::ndarray<nb::ro>;  // read-only views accepted (weights are mmapped)
using OutArray = nb::ndarray<>;       // must be writable

constexpr int kMaxThreads = 1024;     // far above any core count; guards against a typo'd 10**6

[[noreturn]] void fail(const char* fn, const std::string& msg) {
    throw nb::value_error((std::string(fn) + ": " + msg).c_str());
}

std::string dtype_name(nb::dlpack::dtype dt) {
    std::string kind;
    switch (static_cast<nb::dlpack::dtype_code>(dt.code)) {
        case nb::dlpack::dtype_code::Int: kind = "int"; break;
        case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
        case nb::dlpack::dtype_code::Float: kind = "float"; break;
        case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
        case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
        case nb::dlpack::dtype_code::Bool: return "bool";
        default: kind = "dtype-code-" + std::to_string(dt.code) + "-";
    }
    return kind + std::to_string(dt.bits);
}

template <class A>
std::string shape_str(const A& a) {
    std::string s = "(";
    for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class A>
bool c_contiguous(const A& a) {
    int64_t expected = 1;  // element stride a C-contiguous array has at this axis
    for (size_t i = a.ndim(); i-- > 0;) {
        if (a.shape(i) == 0) return true;
        if (a.shape(i) != 1 && a.stride(i) != expected) return false;
        expected *= static_cast<int64_t>(a.shape(i));
    }
    return true;
}

// Array arguments arrive as plain Python objects so that a non-array, or a read-only `out`,
// is a ValueError naming the argument like every other bad input (not an overload TypeError).
// Array arguments arrive as plain Python objects and are viewed here (no copy), so that a
// non-array or a read-only `out` is a ValueError naming the argument like every other bad
// input, rather than an overload-resolution TypeError.
InArray in_array(const char* fn, const char* name, nb::handle h) {
    InArray a;
    if (!nb::try_cast(nb::borrow(h), a, false)) {
        fail(fn, std::string(name) + " must be an array (buffer protocol or DLPack); found " +
                     nb::type_name(h.type()).c_str());
    }
    return a;
}

OutArray out_array(const char* fn, const char* name, nb::handle h) {
    OutArray a;
    if (!nb::try_cast(nb::borrow(h), a, false)) {
        InArray readonly;
        const bool is_readonly = nb::try_cast(nb::borrow(h), readonly, false);
        fail(fn, std::string(name) + " must be a writable array; found " +
                     (is_readonly ? std::string("a read-only array") : nb::type_name(h.type()).c_str()));
    }
    return a;
}

// Device, dtype, ndim and C-contiguity of one array argument; `layout` names its axes.
template <class A>
void check_array(const char* fn, const char* name, const A& a, nb::dlpack::dtype want, size_t ndim,
                 const char* layout) {
    const std::string expected = std::string(name) + " must be a C-contiguous " + dtype_name(want) +
                                 " CPU array of shape " + layout;
    if (a.device_type() != nb::device::cpu::value) {
        fail(fn, expected + "; found an array on device type " + std::to_string(a.device_type()));
    }
    if (a.dtype() != want || a.ndim() != ndim) {
        fail(fn, expected + "; found " + dtype_name(a.dtype()) + " of shape " + shape_str(a));
    }
    if (!c_contiguous(a)) fail(fn, expected + "; found a non-contiguous view of shape " + shape_str(a));
}

template <class A>
void check_dim(const char* fn, const char* name, const A& a, size_t axis, int64_t want, const char* what) {
    if (static_cast<int64_t>(a.shape(axis)) != want) {
        fail(fn, std::string(name) + ".shape[" + std::to_string(axis) + "] must equal " + what + " = " +
                     std::to_string(want) + "; found shape " + shape_str(a));
    }
}

// `out` must not share memory with an input, except being exactly the same array when the
// kernel supports working in place.
template <class A, class B>
void check_disjoint(const char* fn, const char* out_name, const A& out, const char* in_name, const B& in,
                    bool same_allowed) {
    const auto* o = static_cast<const uint8_t*>(static_cast<const void*>(out.data()));
    const auto* i = static_cast<const uint8_t*>(static_cast<const void*>(in.data()));
    if (out.nbytes() == 0 || in.nbytes() == 0) return;
    if (same_allowed && o == i && out.nbytes() == in.nbytes()) return;
    if (o < i + in.nbytes() && i < o + out.nbytes()) {
        fail(fn, std::string(out_name) + " must not overlap " + in_name +
                     (same_allowed ? " (it may be the very same array)" : "") + "; found overlapping memory");
    }
}

void check_threads(const char* fn, int threads) {
    if (threads < 1 || threads > kMaxThreads) {
        fail(fn, "threads must be in [1, " + std::to_string(kMaxThreads) + "]; found " + std::to_string(threads));
    }
}

// w (N, row_bytes) uint8 holding N rows of K values of type qtype.
const edgegen::QuantFormat& check_weights(const char* fn, const InArray& w, int qtype, int64_t K) {
    const edgegen::QuantFormat* fmt = edgegen::find_format(qtype);
    if (fmt == nullptr) {
        fail(fn, "unsupported qtype: expected one of " + edgegen::supported_formats() + "; found " +
                     std::to_string(qtype));
    }
    if (K < 1 || K % fmt->block_values != 0) {
        fail(fn, std::string("K must be a positive multiple of ") + std::to_string(fmt->block_values) +
                     " (the " + fmt->name + " block size); found " + std::to_string(K));
    }
    check_array(fn, "w", w, nb::dtype<uint8_t>(), 2, "(N, row_bytes)");
    const int64_t rb = fmt->row_bytes(K);
    if (static_cast<int64_t>(w.shape(1)) != rb) {
        fail(fn, std::string("w.shape[1] must equal row_bytes(") + fmt->name + ", K=" + std::to_string(K) +
                     ") = " + std::to_string(rb) + "; found shape " + shape_str(w));
    }
    return *fmt;
}

const float* f32_in(const InArray& a) { return static_cast<const float*>(a.data()); }
float* f32_out(const OutArray& a) { return static_cast<float*>(a.data()); }
template <class A>
int64_t dim(const A& a, size_t i) { return static_cast<int64_t>(a.shape(i)); }

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// "scalar, avx2": the dot tables this CPU runs, fastest last.
std::string isa_list() {
    std::string names;
    for (edgegen::Isa i : {edgegen::Isa::kScalar, edgegen::Isa::kAvx2, edgegen::Isa::kNeon}) {
        if (const edgegen::DotTable* t = edgegen::dot_table(i)) names += (names.empty() ? "" : ", ") + std::string(t->name);
    }
    return names;
}

// ---- bound functions ----------------------------------------------------------------------

// The dot table named by `isa` ("auto": the best this CPU runs), or nullptr for the exact path.
const edgegen::DotTable* choose_dots(const char* fn, const std::string& isa, bool int8_act) {
    if (!int8_act) return nullptr;
    if (isa == "auto") return edgegen::dot_table(edgegen::best_isa());
    for (edgegen::Isa i : {edgegen::Isa::kScalar, edgegen::Isa::kAvx2, edgegen::Isa::kNeon}) {
        const edgegen::DotTable* t = edgegen::dot_table(i);
        if (t != nullptr && isa == t->name) return t;
    }
    fail(fn, "isa must be 'auto' or one this CPU runs (" + isa_list() + "); found '" + isa + "'");
}

void matmul(nb::handle w_obj, int qtype, int64_t K, nb::handle x_obj, nb::handle out_obj, int threads,
            const std::string& isa, bool int8_act) {
    const char* fn = "matmul";
    const InArray w = in_array(fn, "w", w_obj), x = in_array(fn, "x", x_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    const edgegen::QuantFormat& fmt = check_weights(fn, w, qtype, K);
    check_array(fn, "x", x, nb::dtype<float>(), 2, "(T, K)");
    check_dim(fn, "x", x, 1, K, "K");
    check_array(fn, "out", out, nb::dtype<float>(), 2, "(T, N)");
    const int64_t N = dim(w, 0), T = dim(x, 0);
    check_dim(fn, "out", out, 0, T, "T = x.shape[0]");
    check_dim(fn, "out", out, 1, N, "N = w.shape[0]");
    check_disjoint(fn, "out", out, "x", x, false);
    check_disjoint(fn, "out", out, "w", w, false);
    const edgegen::DotTable* dots = choose_dots(fn, isa, int8_act);
    nb::gil_scoped_release nogil;
    edgegen::matmul(fmt, static_cast<const uint8_t*>(w.data()), N, K, f32_in(x), T, f32_out(out), threads, dots);
}

void get_rows(nb::handle w_obj, int qtype, int64_t K, nb::handle ids_obj, nb::handle out_obj, int threads) {
    const char* fn = "get_rows";
    const InArray w = in_array(fn, "w", w_obj), ids = in_array(fn, "ids", ids_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    const edgegen::QuantFormat& fmt = check_weights(fn, w, qtype, K);
    check_array(fn, "ids", ids, nb::dtype<int32_t>(), 1, "(T,)");
    check_array(fn, "out", out, nb::dtype<float>(), 2, "(T, K)");
    const int64_t N = dim(w, 0), T = dim(ids, 0);
    check_dim(fn, "out", out, 0, T, "T = ids.shape[0]");
    check_dim(fn, "out", out, 1, K, "K");
    const auto* id = static_cast<const int32_t*>(ids.data());
    for (int64_t t = 0; t < T; ++t) {
        if (id[t] < 0 || id[t] >= N) {
            fail(fn, "ids[" + std::to_string(t) + "] must be in [0, N=" + std::to_string(N) + "); found " +
                         std::to_string(id[t]));
        }
    }
    check_disjoint(fn, "out", out, "w", w, false);
    check_disjoint(fn, "out", out, "ids", ids, false);
    nb::gil_scoped_release nogil;
    edgegen::get_rows(fmt, static_cast<const uint8_t*>(w.data()), K, id, T, f32_out(out), threads);
}

void rmsnorm(nb::handle x_obj, nb::handle weight_obj, double eps, nb::handle out_obj, int threads) {
    const char* fn = "rmsnorm";
    const InArray x = in_array(fn, "x", x_obj), weight = in_array(fn, "weight", weight_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), 2, "(T, D)");
    const int64_t T = dim(x, 0), D = dim(x, 1);
    check_array(fn, "weight", weight, nb::dtype<float>(), 1, "(D,)");
    check_dim(fn, "weight", weight, 0, D, "D = x.shape[1]");
    check_array(fn, "out", out, nb::dtype<float>(), 2, "(T, D)");
    check_dim(fn, "out", out, 0, T, "T = x.shape[0]");
    check_dim(fn, "out", out, 1, D, "D = x.shape[1]");
    if (!(eps >= 0.0) || !std::isfinite(eps)) fail(fn, "eps must be finite and >= 0; found " + num(eps));
    check_disjoint(fn, "out", out, "x", x, true);
    check_disjoint(fn, "out", out, "weight", weight, false);
    nb::gil_scoped_release nogil;
    edgegen::rmsnorm(f32_in(x), f32_in(weight), eps, f32_out(out), T, D, threads);
}

void rope(nb::handle x_obj, nb::handle positions_obj, int64_t n_rot, double theta, int style, int threads) {
    const char* fn = "rope";
    const OutArray x = out_array(fn, "x", x_obj);
    const InArray positions = in_array(fn, "positions", positions_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), 3, "(T, H, Dh)");
    const int64_t T = dim(x, 0), H = dim(x, 1), Dh = dim(x, 2);
    check_array(fn, "positions", positions, nb::dtype<int32_t>(), 1, "(T,)");
    check_dim(fn, "positions", positions, 0, T, "T = x.shape[0]");
    if (n_rot < 2 || n_rot % 2 != 0 || n_rot > Dh) {
        fail(fn, "n_rot must be even and in [2, Dh=" + std::to_string(Dh) + "]; found " + std::to_string(n_rot));
    }
    if (!(theta > 0.0) || !std::isfinite(theta)) {
        fail(fn, "theta must be finite and > 0; found " + num(theta));
    }
    if (style != edgegen::kRopeNormal && style != edgegen::kRopeNeox) {
        fail(fn, "style must be 0 (NORMAL) or 2 (NEOX); found " + std::to_string(style));
    }
    check_disjoint(fn, "x", x, "positions", positions, false);
    nb::gil_scoped_release nogil;
    edgegen::rope(f32_out(x), static_cast<const int32_t*>(positions.data()), T, H, Dh, n_rot, theta, style,
                  threads);
}

void attention(nb::handle q_obj, nb::handle k_obj, nb::handle v_obj, int64_t pos0, double scale,
               nb::handle out_obj, int threads) {
    const char* fn = "attention";
    const InArray q = in_array(fn, "q", q_obj), k_cache = in_array(fn, "k_cache", k_obj);
    const InArray v_cache = in_array(fn, "v_cache", v_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "q", q, nb::dtype<float>(), 3, "(T, Hq, Dh)");
    const int64_t T = dim(q, 0), Hq = dim(q, 1), Dh = dim(q, 2);
    check_array(fn, "k_cache", k_cache, nb::dtype<float>(), 3, "(Hkv, C, Dh)");
    const int64_t Hkv = dim(k_cache, 0), C = dim(k_cache, 1);
    check_dim(fn, "k_cache", k_cache, 2, Dh, "Dh = q.shape[2]");
    check_array(fn, "v_cache", v_cache, nb::dtype<float>(), 3, "(Hkv, C, Dh)");
    check_dim(fn, "v_cache", v_cache, 0, Hkv, "Hkv = k_cache.shape[0]");
    check_dim(fn, "v_cache", v_cache, 1, C, "C = k_cache.shape[1]");
    check_dim(fn, "v_cache", v_cache, 2, Dh, "Dh = q.shape[2]");
    check_array(fn, "out", out, nb::dtype<float>(), 3, "(T, Hq, Dh)");
    check_dim(fn, "out", out, 0, T, "T = q.shape[0]");
    check_dim(fn, "out", out, 1, Hq, "Hq = q.shape[1]");
    check_dim(fn, "out", out, 2, Dh, "Dh = q.shape[2]");
    if (Hkv < 1 || Hq % Hkv != 0) {
        fail(fn, "q heads must be a multiple of KV heads (Hq % Hkv == 0); found Hq=" + std::to_string(Hq) +
                     ", Hkv=" + std::to_string(Hkv));
    }
    if (pos0 < 0 || pos0 + T > C) {
        fail(fn, "pos0 + T must fit the cache: 0 <= pos0 and pos0 + T <= C=" + std::to_string(C) +
                     "; found pos0=" + std::to_string(pos0) + ", T=" + std::to_string(T));
    }
    if (!std::isfinite(scale)) fail(fn, "scale must be finite; found " + num(scale));
    check_disjoint(fn, "out", out, "q", q, false);
    check_disjoint(fn, "out", out, "k_cache", k_cache, false);
    check_disjoint(fn, "out", out, "v_cache", v_cache, false);
    nb::gil_scoped_release nogil;
    edgegen::attention(f32_in(q), f32_in(k_cache), f32_in(v_cache), T, Hq, Hkv, C, Dh, pos0,
                       static_cast<float>(scale), f32_out(out), threads);
}

void swiglu(nb::handle gate_obj, nb::handle up_obj, nb::handle out_obj, int threads) {
    const char* fn = "swiglu";
    const InArray gate = in_array(fn, "gate", gate_obj), up = in_array(fn, "up", up_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "gate", gate, nb::dtype<float>(), 2, "(T, F)");
    const int64_t T = dim(gate, 0), F = dim(gate, 1);
    check_array(fn, "up", up, nb::dtype<float>(), 2, "(T, F)");
    check_dim(fn, "up", up, 0, T, "T = gate.shape[0]");
    check_dim(fn, "up", up, 1, F, "F = gate.shape[1]");
    check_array(fn, "out", out, nb::dtype<float>(), 2, "(T, F)");
    check_dim(fn, "out", out, 0, T, "T = gate.shape[0]");
    check_dim(fn, "out", out, 1, F, "F = gate.shape[1]");
    check_disjoint(fn, "out", out, "gate", gate, true);
    check_disjoint(fn, "out", out, "up", up, true);
    nb::gil_scoped_release nogil;
    edgegen::swiglu(f32_in(gate), f32_in(up), f32_out(out), T * F, threads);
}

// ---- the compiled decoder -----------------------------------------------------------------

// A Decoder over arrays that Python owns: `keep` holds them alive as long as the decoder.
struct PyDecoder {
    edgegen::Decoder d;
    nb::list keep;
};

PyDecoder make_decoder(nb::tuple dims, double rms_eps, double rope_theta, nb::list mats, nb::list vecs) {
    const char* fn = "Decoder";
    if (dims.size() != 9) fail(fn, "dims must be (dim, n_heads, n_kv_heads, head_dim, ffn_dim, n_rot, vocab, n_layers, rope_style)");
    int64_t v[9];
    for (size_t i = 0; i < 9; ++i) {
        v[i] = nb::cast<int64_t>(dims[i]);
        if (v[i] < (i == 8 ? 0 : 1)) fail(fn, "dims[" + std::to_string(i) + "] must be positive; found " + std::to_string(v[i]));
    }
    const int64_t dim = v[0], n_heads = v[1], n_kv = v[2], hd = v[3], ffn = v[4], n_rot = v[5], vocab = v[6], n_layers = v[7];
    if (n_heads % n_kv != 0) fail(fn, "n_heads must be a multiple of n_kv_heads");
    if (n_rot % 2 != 0 || n_rot > hd) fail(fn, "n_rot must be even and <= head_dim; found " + std::to_string(n_rot));
    if (v[8] != edgegen::kRopeNormal && v[8] != edgegen::kRopeNeox) fail(fn, "rope_style must be 0 or 2");
    const int64_t q_dim = n_heads * hd, kv_dim = n_kv * hd;
    const int64_t per_layer_mats = 7, per_layer_vecs = 5;
    if (static_cast<int64_t>(mats.size()) != 2 + per_layer_mats * n_layers) {
        fail(fn, "mats must hold token_embd, output and 7 matrices per layer; found " + std::to_string(mats.size()));
    }
    if (static_cast<int64_t>(vecs.size()) != 1 + per_layer_vecs * n_layers) {
        fail(fn, "vecs must hold output_norm and 5 vectors per layer; found " + std::to_string(vecs.size()));
    }
    PyDecoder out;
    out.d.shape = {dim, n_heads, n_kv, hd, ffn, n_rot, vocab, rms_eps, rope_theta, static_cast<int>(v[8])};
    size_t mi = 0, vi = 0;
    auto matrix = [&](int64_t rows, int64_t cols) {
        nb::tuple pair = nb::cast<nb::tuple>(mats[mi]);
        const std::string name = "mats[" + std::to_string(mi++) + "]";
        const InArray w = in_array(fn, name.c_str(), pair[0]);
        const edgegen::QuantFormat& fmt = check_weights(fn, w, nb::cast<int>(pair[1]), cols);
        check_dim(fn, name.c_str(), w, 0, rows, "the matrix's row count");
        out.keep.append(pair[0]);
        return edgegen::Matrix{static_cast<const uint8_t*>(w.data()), &fmt, rows, cols};
    };
    auto vector = [&](int64_t n, bool optional) -> const float* {
        nb::handle h = vecs[vi];
        const std::string name = "vecs[" + std::to_string(vi++) + "]";
        if (h.is_none()) {
            if (!optional) fail(fn, name + " must be a float32 array; found None");
            return nullptr;
        }
        const InArray a = in_array(fn, name.c_str(), h);
        check_array(fn, name.c_str(), a, nb::dtype<float>(), 1, "(n,)");
        check_dim(fn, name.c_str(), a, 0, n, "its width");
        out.keep.append(h);
        return f32_in(a);
    };
    out.d.token_embd = matrix(vocab, dim);
    out.d.output = matrix(vocab, dim);
    out.d.output_norm = vector(dim, false);
    for (int64_t i = 0; i < n_layers; ++i) {
        edgegen::DecoderLayer L{};
        L.wq = matrix(q_dim, dim);
        L.wk = matrix(kv_dim, dim);
        L.wv = matrix(kv_dim, dim);
        L.wo = matrix(dim, q_dim);
        L.gate = matrix(ffn, dim);
        L.up = matrix(ffn, dim);
        L.down = matrix(dim, ffn);
        L.attn_norm = vector(dim, false);
        L.ffn_norm = vector(dim, false);
        L.bq = vector(q_dim, true);
        L.bk = vector(kv_dim, true);
        L.bv = vector(kv_dim, true);
        out.d.layers.push_back(L);
    }
    return out;
}

void decoder_forward(const PyDecoder& self, nb::handle tokens_obj, int64_t pos0, nb::handle k_obj, nb::handle v_obj,
                     nb::handle logits_obj, bool all_logits, int threads, const std::string& isa, bool int8_act) {
    const char* fn = "Decoder.forward";
    const edgegen::DecoderShape& c = self.d.shape;
    const InArray tokens = in_array(fn, "tokens", tokens_obj);
    const OutArray k_cache = out_array(fn, "k_cache", k_obj), v_cache = out_array(fn, "v_cache", v_obj);
    const OutArray logits = out_array(fn, "logits", logits_obj);
    check_threads(fn, threads);
    check_array(fn, "tokens", tokens, nb::dtype<int32_t>(), 1, "(T,)");
    const int64_t T = dim(tokens, 0);
    if (T < 1) fail(fn, "tokens must hold at least one id; found none");
    const auto* ids = static_cast<const int32_t*>(tokens.data());
    for (int64_t t = 0; t < T; ++t) {
        if (ids[t] < 0 || ids[t] >= c.vocab) {
            fail(fn, "tokens[" + std::to_string(t) + "] must be in [0, vocab=" + std::to_string(c.vocab) + "); found " +
                         std::to_string(ids[t]));
        }
    }
    const int64_t n_layers = static_cast<int64_t>(self.d.layers.size());
    check_array(fn, "k_cache", k_cache, nb::dtype<float>(), 4, "(n_layers, n_kv_heads, capacity, head_dim)");
    check_dim(fn, "k_cache", k_cache, 0, n_layers, "n_layers");
    check_dim(fn, "k_cache", k_cache, 1, c.n_kv_heads, "n_kv_heads");
    check_dim(fn, "k_cache", k_cache, 3, c.head_dim, "head_dim");
    const int64_t capacity = dim(k_cache, 2);
    check_array(fn, "v_cache", v_cache, nb::dtype<float>(), 4, "(n_layers, n_kv_heads, capacity, head_dim)");
    for (size_t i = 0; i < 4; ++i) check_dim(fn, "v_cache", v_cache, i, dim(k_cache, i), "k_cache's");
    if (pos0 < 0 || pos0 + T > capacity) {
        fail(fn, "pos0 + T must fit the cache: 0 <= pos0 and pos0 + T <= capacity=" + std::to_string(capacity) +
                     "; found pos0=" + std::to_string(pos0) + ", T=" + std::to_string(T));
    }
    check_array(fn, "logits", logits, nb::dtype<float>(), 2, "(rows, vocab)");
    check_dim(fn, "logits", logits, 0, all_logits ? T : 1, all_logits ? "T" : "1 (last token only)");
    check_dim(fn, "logits", logits, 1, c.vocab, "vocab");
    check_disjoint(fn, "k_cache", k_cache, "v_cache", v_cache, false);
    check_disjoint(fn, "logits", logits, "k_cache", k_cache, false);
    check_disjoint(fn, "logits", logits, "v_cache", v_cache, false);
    const edgegen::DotTable* dots = choose_dots(fn, isa, int8_act);
    nb::gil_scoped_release nogil;
    edgegen::decoder_forward(self.d, ids, T, pos0, f32_out(k_cache), f32_out(v_cache), capacity, all_logits,
                             f32_out(logits), threads, dots);
}

}  // namespace

NB_MODULE(_cpp, m) {
    m.doc() = "edgegen C++ kernels (OpenMP); signatures and semantics as in edgegen.kernels.ref";
    m.def("matmul", &matmul, "w"_a.none(), "qtype"_a, "K"_a, "x"_a.none(), "out"_a.none(), "threads"_a = 1,
          "isa"_a = "auto", "int8_act"_a = true,
          nb::sig("def matmul(w: numpy.ndarray, qtype: int, K: int, x: numpy.ndarray, out: numpy.ndarray, "
                  "threads: int = 1, isa: str = 'auto', int8_act: bool = True) -> None"),
          "out[t, n] = sum_k W[n, k] * x[t, k]; w uint8 (N, row_bytes) of type qtype, x (T, K), out (T, N).\n"
          "int8_act: block formats (Q8_0, Q4_0, Q4_K, Q6_K) take x quantized to 8 bits (ref.matmul_act_q8_ref);\n"
          "False decodes every format to float32 (ref.matmul_ref). isa: 'auto' or a name from isa_names().");
    m.def("isa_names", [] {
              nb::list names;
              for (edgegen::Isa i : {edgegen::Isa::kScalar, edgegen::Isa::kAvx2, edgegen::Isa::kNeon}) {
                  if (const edgegen::DotTable* t = edgegen::dot_table(i)) names.append(t->name);
              }
              return names;
          },
          "Names of the dot-product tables this CPU runs, fastest last.");
    nb::class_<PyDecoder>(m, "Decoder",
                          "The Llama-family forward pass in one call (edgegen/models/llama.py forward).")
        .def("forward", &decoder_forward, "tokens"_a.none(), "pos0"_a, "k_cache"_a.none(), "v_cache"_a.none(),
             "logits"_a.none(), "all_logits"_a, "threads"_a = 1, "isa"_a = "auto", "int8_act"_a = true,
             "Run tokens (T,) int32 at pos0..; write K/V rows into the caches (n_layers, n_kv_heads, capacity, "
             "head_dim) and logits (T or 1, vocab).");
    m.def("make_decoder", &make_decoder, "dims"_a, "rms_eps"_a, "rope_theta"_a, "mats"_a, "vecs"_a,
          "dims: (dim, n_heads, n_kv_heads, head_dim, ffn_dim, n_rot, vocab, n_layers, rope_style); mats: "
          "(array, qtype) for token_embd, output, then per layer wq, wk, wv, wo, gate, up, down; vecs: "
          "output_norm, then per layer attn_norm, ffn_norm, bq, bk, bv (biases may be None).");
    m.def("best_isa", [] { return std::string(edgegen::dot_table(edgegen::best_isa())->name); },
          "The table matmul uses with isa='auto'.");
    m.def("get_rows", &get_rows, "w"_a.none(), "qtype"_a, "K"_a, "ids"_a.none(), "out"_a.none(), "threads"_a = 1,
          nb::sig("def get_rows(w: numpy.ndarray, qtype: int, K: int, ids: numpy.ndarray, out: numpy.ndarray, "
                  "threads: int = 1) -> None"),
          "out[t] = dequantize(w[ids[t]]); ids int32 (T,), out (T, K).");
    m.def("rmsnorm", &rmsnorm, "x"_a.none(), "weight"_a.none(), "eps"_a, "out"_a.none(), "threads"_a = 1,
          nb::sig("def rmsnorm(x: numpy.ndarray, weight: numpy.ndarray, eps: float, out: numpy.ndarray, "
                  "threads: int = 1) -> None"),
          "out = x / sqrt(mean(x^2) + eps) * weight per row; x, out (T, D), weight (D,); out may be x.");
    m.def("rope", &rope, "x"_a.none(), "positions"_a.none(), "n_rot"_a, "theta"_a, "style"_a, "threads"_a = 1,
          nb::sig("def rope(x: numpy.ndarray, positions: numpy.ndarray, n_rot: int, theta: float, style: int, "
                  "threads: int = 1) -> None"),
          "Rotate the first n_rot dims of each head of x (T, H, Dh) in place; style 0 NORMAL, 2 NEOX.");
    m.def("attention", &attention, "q"_a.none(), "k_cache"_a.none(), "v_cache"_a.none(), "pos0"_a, "scale"_a,
          "out"_a.none(), "threads"_a = 1,
          nb::sig("def attention(q: numpy.ndarray, k_cache: numpy.ndarray, v_cache: numpy.ndarray, pos0: int, "
                  "scale: float, out: numpy.ndarray, threads: int = 1) -> None"),
          "Causal grouped-query attention; q, out (T, Hq, Dh), k_cache, v_cache (Hkv, C, Dh).");
    m.def("swiglu", &swiglu, "gate"_a.none(), "up"_a.none(), "out"_a.none(), "threads"_a = 1,
          nb::sig("def swiglu(gate: numpy.ndarray, up: numpy.ndarray, out: numpy.ndarray, "
                  "threads: int = 1) -> None"),
          "out = silu(gate) * up over (T, F); out may be gate or up.");
}
