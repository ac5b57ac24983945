// Python bindings of the edgegen C++ kernels (module edgegen.kernels._cpp).
//
// Every function follows kernels/ref.py: arrays in, caller-allocated `out` written, nothing
// returned. This file is the boundary: it checks what Python hands over (device, dtype, ndim,
// shape, C-contiguity, overlap, index ranges, scalar ranges) and raises ValueError naming the
// argument, what was expected and what was found; then it releases the GIL and calls the
// kernel with plain pointers. Arrays are used in place, never copied. The checks themselves are
// in binding_checks.h; the whole-model Decoder is bound in binding_decoder.cpp.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "attention.h"
#include "binding_checks.h"
#include "norm_rope.h"
#include "gemm.h"
#include "quant_dot.h"
#include "quant_formats.h"
#include "vec_dot.h"

namespace nb = nanobind;
using namespace nb::literals;
using namespace edgegen_binding;

namespace edgegen_binding {
void bind_decoder(nb::module_& m);  // binding_decoder.cpp
void bind_diffusion(nb::module_& m);  // binding_diffusion.cpp
}  // namespace edgegen_binding

namespace {

// ---- bound functions ----------------------------------------------------------------------

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
               nb::handle out_obj, int threads, const std::string& isa) {
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
    const edgegen::DotTable* dots = choose_dots(fn, isa, true);
    nb::gil_scoped_release nogil;
    edgegen::attention(f32_in(q), f32_in(k_cache), f32_in(v_cache), T, Hq, Hkv, C, Dh, pos0,
                       static_cast<float>(scale), f32_out(out), threads, dots);
}

void swiglu(nb::handle gate_obj, nb::handle up_obj, nb::handle out_obj, int threads, const std::string& isa) {
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
    const edgegen::DotTable* dots = choose_dots(fn, isa, true);
    nb::gil_scoped_release nogil;
    edgegen::swiglu(f32_in(gate), f32_in(up), f32_out(out), T * F, threads, dots);
}

}  // namespace

NB_MODULE(_cpp, m) {
    m.doc() = "edgegen C++ kernels (OpenMP); signatures and semantics as in edgegen.kernels.ref";
    m.def("matmul", &matmul, "w"_a.none(), "qtype"_a, "K"_a, "x"_a.none(), "out"_a.none(), "threads"_a = 1,
          "isa"_a = "auto", "int8_act"_a = true,
          nb::sig("def matmul(w: numpy.ndarray, qtype: int, K: int, x: numpy.ndarray, out: numpy.ndarray, "
                  "threads: int = 1, isa: str = 'auto', int8_act: bool = True) -> None"),
          "out[t, n] = sum_k W[n, k] * x[t, k]; w uint8 (N, row_bytes) of type qtype, x (T, K), out (T, N).\n"
          "int8_act: block formats (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) take x quantized to 8 bits (ref.matmul_act_q8_ref);\n"
          "False decodes every format to float32 (ref.matmul_ref). isa: 'auto' or a name from isa_names().");
    m.attr("gemm_min_tokens") = edgegen::kGemmMinTokens;
    m.def("isa_names", [] {
              nb::list names;
              for (edgegen::Isa i : {edgegen::Isa::kScalar, edgegen::Isa::kAvx2, edgegen::Isa::kNeon}) {
                  if (const edgegen::DotTable* t = edgegen::dot_table(i)) names.append(t->name);
              }
              return names;
          },
          "Names of the dot-product tables this CPU runs, fastest last.");
    edgegen_binding::bind_decoder(m);
    edgegen_binding::bind_diffusion(m);
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
          "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def attention(q: numpy.ndarray, k_cache: numpy.ndarray, v_cache: numpy.ndarray, pos0: int, "
                  "scale: float, out: numpy.ndarray, threads: int = 1, isa: str = 'auto') -> None"),
          "Causal grouped-query attention; q, out (T, Hq, Dh), k_cache, v_cache (Hkv, C, Dh).");
    m.def("swiglu", &swiglu, "gate"_a.none(), "up"_a.none(), "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def swiglu(gate: numpy.ndarray, up: numpy.ndarray, out: numpy.ndarray, "
                  "threads: int = 1, isa: str = 'auto') -> None"),
          "out = silu(gate) * up over (T, F); out may be gate or up.");
}
