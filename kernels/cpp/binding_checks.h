// Argument checks shared by the binding files (binding.cpp, binding_decoder.cpp): each raises
// ValueError naming the function, the argument, what was expected and what was found.
// Internal linkage (anonymous namespace): each binding file gets its own copy.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "quant_formats.h"
#include "vec_dot.h"

namespace edgegen_binding {

namespace nb = nanobind;

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

}  // namespace
}  // namespace edgegen_binding
