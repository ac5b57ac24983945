// Python binding of the diffusion kernels (diffusion.h): conv2d, group_norm, layer_norm,
// multihead_attention, geglu, silu, guided_update. `isa` ('auto' or a name from isa_names())
// picks the SIMD table of the kernels that have SIMD loops, so tests reach the portable path. Same contract as binding.cpp: arrays in,
// caller-allocated `out` written, every malformed argument a ValueError naming it, GIL released
// around the kernel, arrays used in place. References: kernels/diffusion_ref.py.
#include <nanobind/nanobind.h>

#include "binding_checks.h"
#include "diffusion.h"

namespace edgegen_binding {

using namespace nb::literals;

namespace {

// The table named by isa ("auto": the best this CPU runs), if it has a GEMM tile; the scalar
// table (which always has one) otherwise.
const edgegen::DotTable& gemm_dots(const char* fn, const std::string& isa) {
    const edgegen::DotTable* t = choose_dots(fn, isa, true);
    return t != nullptr && t->gemm_tile != nullptr ? *t : edgegen::kDotScalar;
}

void check_finite(const char* fn, const char* name, double v) {
    if (!std::isfinite(v)) fail(fn, std::string(name) + " must be finite; found " + num(v));
}

void check_eps(const char* fn, double eps) {
    if (!(eps >= 0.0) || !std::isfinite(eps)) fail(fn, "eps must be finite and >= 0; found " + num(eps));
}

// `name` must have exactly the shape of `like` (float32, C-contiguous).
template <class A, class L>
void check_same_shape(const char* fn, const char* name, const A& a, const char* like_name, const L& like) {
    check_array(fn, name, a, nb::dtype<float>(), like.ndim(), (std::string("of ") + like_name).c_str());
    for (size_t i = 0; i < like.ndim(); ++i) {
        check_dim(fn, name, a, i, dim(like, i), (std::string(like_name) + ".shape[" + std::to_string(i) + "]").c_str());
    }
}

const float* optional_vec(const char* fn, const char* name, nb::handle h, int64_t n, const char* what) {
    if (h.is_none()) return nullptr;
    const InArray a = in_array(fn, name, h);
    check_array(fn, name, a, nb::dtype<float>(), 1, "(n,)");
    check_dim(fn, name, a, 0, n, what);
    return f32_in(a);
}

int64_t check_positive(const char* fn, const char* name, int64_t v, int64_t lo = 1) {
    if (v < lo) fail(fn, std::string(name) + " must be >= " + std::to_string(lo) + "; found " + std::to_string(v));
    return v;
}

void conv2d(nb::handle x_obj, nb::handle w_obj, int qtype, nb::handle bias_obj, int64_t kh, int64_t kw, int64_t stride,
            int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right, int64_t upsample,
            nb::handle out_obj, int threads, const std::string& isa) {
    const char* fn = "conv2d";
    const InArray x = in_array(fn, "x", x_obj), w = in_array(fn, "w", w_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), 4, "(B, H, W, Cin)");
    edgegen::Conv2dShape s{};
    s.B = dim(x, 0), s.H = dim(x, 1), s.W = dim(x, 2), s.Cin = dim(x, 3);
    s.kh = check_positive(fn, "kh", kh), s.kw = check_positive(fn, "kw", kw), s.stride = check_positive(fn, "stride", stride);
    s.pad_top = check_positive(fn, "pad_top", pad_top, 0), s.pad_bottom = check_positive(fn, "pad_bottom", pad_bottom, 0);
    s.pad_left = check_positive(fn, "pad_left", pad_left, 0), s.pad_right = check_positive(fn, "pad_right", pad_right, 0);
    if (upsample != 1 && upsample != 2) fail(fn, "upsample must be 1 or 2; found " + std::to_string(upsample));
    s.upsample = upsample;
    if (qtype != edgegen::kF32 && qtype != edgegen::kF16) {
        fail(fn, "qtype must be F32 (0) or F16 (1); found " + std::to_string(qtype));
    }
    const edgegen::QuantFormat& fmt = check_weights(fn, w, qtype, check_positive(fn, "x.shape[3] (Cin)", s.Cin) * s.kh * s.kw);
    s.Cout = dim(w, 0);
    const int64_t hu = s.H * upsample + pad_top + pad_bottom, wu = s.W * upsample + pad_left + pad_right;
    if (hu < kh || wu < kw) {
        fail(fn, "the padded input (" + std::to_string(hu) + " x " + std::to_string(wu) + ") must be at least the kernel (" +
                     std::to_string(kh) + " x " + std::to_string(kw) + ")");
    }
    s.Ho = (hu - kh) / stride + 1, s.Wo = (wu - kw) / stride + 1;
    const float* bias = optional_vec(fn, "bias", bias_obj, s.Cout, "Cout = w.shape[0]");
    check_array(fn, "out", out, nb::dtype<float>(), 4, "(B, Ho, Wo, Cout)");
    check_dim(fn, "out", out, 0, s.B, "B = x.shape[0]");
    check_dim(fn, "out", out, 1, s.Ho, "Ho");
    check_dim(fn, "out", out, 2, s.Wo, "Wo");
    check_dim(fn, "out", out, 3, s.Cout, "Cout = w.shape[0]");
    check_disjoint(fn, "out", out, "x", x, false);
    check_disjoint(fn, "out", out, "w", w, false);
    if (bias != nullptr) check_disjoint(fn, "out", out, "bias", in_array(fn, "bias", bias_obj), false);
    const edgegen::DotTable& dots = gemm_dots(fn, isa);
    nb::gil_scoped_release nogil;
    edgegen::conv2d(f32_in(x), fmt, static_cast<const uint8_t*>(w.data()), bias, s, f32_out(out), threads, dots);
}

void group_norm(nb::handle x_obj, int64_t groups, nb::handle gamma_obj, nb::handle beta_obj, double eps, bool silu,
                nb::handle out_obj, int threads, const std::string& isa) {
    const char* fn = "group_norm";
    const InArray x = in_array(fn, "x", x_obj), gamma = in_array(fn, "gamma", gamma_obj), beta = in_array(fn, "beta", beta_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), 3, "(B, P, C)");
    const int64_t B = dim(x, 0), P = dim(x, 1), C = dim(x, 2);
    if (groups < 1 || C % groups != 0) {
        fail(fn, "groups must be positive and divide C = x.shape[2] = " + std::to_string(C) + "; found " + std::to_string(groups));
    }
    check_array(fn, "gamma", gamma, nb::dtype<float>(), 1, "(C,)");
    check_dim(fn, "gamma", gamma, 0, C, "C = x.shape[2]");
    check_array(fn, "beta", beta, nb::dtype<float>(), 1, "(C,)");
    check_dim(fn, "beta", beta, 0, C, "C = x.shape[2]");
    check_eps(fn, eps);
    check_same_shape(fn, "out", out, "x", x);
    check_disjoint(fn, "out", out, "x", x, true);
    check_disjoint(fn, "out", out, "gamma", gamma, false);
    check_disjoint(fn, "out", out, "beta", beta, false);
    const edgegen::DotTable& dots = gemm_dots(fn, isa);
    nb::gil_scoped_release nogil;
    edgegen::group_norm(f32_in(x), B, P, C, groups, f32_in(gamma), f32_in(beta), eps, silu, f32_out(out), threads, dots);
}

void layer_norm(nb::handle x_obj, nb::handle gamma_obj, nb::handle beta_obj, double eps, nb::handle out_obj, int threads) {
    const char* fn = "layer_norm";
    const InArray x = in_array(fn, "x", x_obj), gamma = in_array(fn, "gamma", gamma_obj), beta = in_array(fn, "beta", beta_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), 2, "(T, D)");
    const int64_t T = dim(x, 0), D = dim(x, 1);
    check_array(fn, "gamma", gamma, nb::dtype<float>(), 1, "(D,)");
    check_dim(fn, "gamma", gamma, 0, D, "D = x.shape[1]");
    check_array(fn, "beta", beta, nb::dtype<float>(), 1, "(D,)");
    check_dim(fn, "beta", beta, 0, D, "D = x.shape[1]");
    check_eps(fn, eps);
    check_same_shape(fn, "out", out, "x", x);
    check_disjoint(fn, "out", out, "x", x, true);
    check_disjoint(fn, "out", out, "gamma", gamma, false);
    check_disjoint(fn, "out", out, "beta", beta, false);
    nb::gil_scoped_release nogil;
    edgegen::layer_norm(f32_in(x), T, D, f32_in(gamma), f32_in(beta), eps, f32_out(out), threads);
}

void multihead_attention(nb::handle q_obj, nb::handle k_obj, nb::handle v_obj, int64_t heads, bool causal, int64_t chunk,
                         nb::handle out_obj, int threads, const std::string& isa) {
    const char* fn = "multihead_attention";
    const InArray q = in_array(fn, "q", q_obj), k = in_array(fn, "k", k_obj), v = in_array(fn, "v", v_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "q", q, nb::dtype<float>(), 3, "(B, Nq, H*Dh)");
    const int64_t B = dim(q, 0), Nq = dim(q, 1), D = dim(q, 2);
    check_array(fn, "k", k, nb::dtype<float>(), 3, "(B, Nk, H*Dh)");
    const int64_t Nk = dim(k, 1);
    check_dim(fn, "k", k, 0, B, "B = q.shape[0]");
    check_dim(fn, "k", k, 2, D, "H*Dh = q.shape[2]");
    if (Nk < 1) fail(fn, "k must hold at least one key (Nk = k.shape[1] >= 1); found shape " + shape_str(k));
    check_same_shape(fn, "v", v, "k", k);
    if (heads < 1 || D % heads != 0) {
        fail(fn, "heads must be positive and divide H*Dh = q.shape[2] = " + std::to_string(D) + "; found " + std::to_string(heads));
    }
    if (causal && Nk < Nq) fail(fn, "causal attention needs Nk >= Nq; found Nq=" + std::to_string(Nq) + ", Nk=" + std::to_string(Nk));
    check_positive(fn, "chunk", chunk, 0);
    check_same_shape(fn, "out", out, "q", q);
    check_disjoint(fn, "out", out, "q", q, false);
    check_disjoint(fn, "out", out, "k", k, false);
    check_disjoint(fn, "out", out, "v", v, false);
    const edgegen::DotTable& dots = gemm_dots(fn, isa);
    nb::gil_scoped_release nogil;
    edgegen::mh_attention(f32_in(q), f32_in(k), f32_in(v), B, Nq, Nk, heads, D / heads, causal, chunk, f32_out(out),
                          threads, dots);
}

void geglu(nb::handle x_obj, nb::handle out_obj, int threads, const std::string& isa) {
    const char* fn = "geglu";
    const InArray x = in_array(fn, "x", x_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), 2, "(T, 2F)");
    const int64_t T = dim(x, 0), F2 = dim(x, 1);
    if (F2 % 2 != 0) fail(fn, "x.shape[1] must be even (2F); found shape " + shape_str(x));
    check_array(fn, "out", out, nb::dtype<float>(), 2, "(T, F)");
    check_dim(fn, "out", out, 0, T, "T = x.shape[0]");
    check_dim(fn, "out", out, 1, F2 / 2, "F = x.shape[1] / 2");
    check_disjoint(fn, "out", out, "x", x, false);
    const edgegen::DotTable& dots = gemm_dots(fn, isa);
    nb::gil_scoped_release nogil;
    edgegen::geglu(f32_in(x), T, F2 / 2, f32_out(out), threads, dots);
}

void silu(nb::handle x_obj, nb::handle out_obj, int threads, const std::string& isa) {
    const char* fn = "silu";
    const InArray x = in_array(fn, "x", x_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), x.ndim(), "(any)");
    check_same_shape(fn, "out", out, "x", x);
    check_disjoint(fn, "out", out, "x", x, true);
    const edgegen::DotTable& dots = gemm_dots(fn, isa);
    nb::gil_scoped_release nogil;
    edgegen::silu(f32_in(x), static_cast<int64_t>(x.size()), f32_out(out), threads, dots);
}

void guided_update(nb::handle x_obj, nb::handle uncond_obj, nb::handle cond_obj, double scale, double cx, double cout,
                   nb::handle noise_obj, double cnoise, nb::handle out_obj, int threads) {
    const char* fn = "guided_update";
    const InArray x = in_array(fn, "x", x_obj), uncond = in_array(fn, "uncond", uncond_obj);
    const InArray cond = in_array(fn, "cond", cond_obj);
    const OutArray out = out_array(fn, "out", out_obj);
    check_threads(fn, threads);
    check_array(fn, "x", x, nb::dtype<float>(), x.ndim(), "(any)");
    check_same_shape(fn, "uncond", uncond, "x", x);
    check_same_shape(fn, "cond", cond, "x", x);
    const float* noise = nullptr;
    if (!noise_obj.is_none()) {
        const InArray n = in_array(fn, "noise", noise_obj);
        check_same_shape(fn, "noise", n, "x", x);
        check_disjoint(fn, "out", out, "noise", n, true);
        noise = f32_in(n);
    }
    check_finite(fn, "scale", scale), check_finite(fn, "cx", cx), check_finite(fn, "cout", cout);
    check_finite(fn, "cnoise", cnoise);
    check_same_shape(fn, "out", out, "x", x);
    check_disjoint(fn, "out", out, "x", x, true);
    check_disjoint(fn, "out", out, "uncond", uncond, true);
    check_disjoint(fn, "out", out, "cond", cond, true);
    nb::gil_scoped_release nogil;
    edgegen::guided_update(f32_in(x), f32_in(uncond), f32_in(cond), static_cast<float>(scale), static_cast<float>(cx),
                           static_cast<float>(cout), noise, static_cast<float>(cnoise), f32_out(out),
                           static_cast<int64_t>(x.size()), threads);
}

}  // namespace

void bind_diffusion(nb::module_& m) {
    m.def("conv2d", &conv2d, "x"_a.none(), "w"_a.none(), "qtype"_a, "bias"_a.none(), "kh"_a, "kw"_a, "stride"_a,
          "pad_top"_a, "pad_bottom"_a, "pad_left"_a, "pad_right"_a, "upsample"_a, "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def conv2d(x: numpy.ndarray, w: numpy.ndarray, qtype: int, bias: numpy.ndarray | None, kh: int, "
                  "kw: int, stride: int, pad_top: int, pad_bottom: int, pad_left: int, pad_right: int, upsample: int, "
                  "out: numpy.ndarray, threads: int = 1, isa: str = 'auto') -> None"),
          "out (B, Ho, Wo, Cout) = conv(nearest_upsample(x (B, H, W, Cin), upsample), W) + bias; w uint8 (Cout, row_bytes)\n"
          "of qtype F32/F16 holding (Cout, kh*kw*Cin) in (kh, kw, Cin) order (diffusion_ref.conv2d_ref).");
    m.def("group_norm", &group_norm, "x"_a.none(), "groups"_a, "gamma"_a.none(), "beta"_a.none(), "eps"_a, "silu"_a,
          "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def group_norm(x: numpy.ndarray, groups: int, gamma: numpy.ndarray, beta: numpy.ndarray, eps: float, "
                  "silu: bool, out: numpy.ndarray, threads: int = 1, isa: str = 'auto') -> None"),
          "GroupNorm over x (B, P, C) per (batch, group), then SiLU if silu; out may be x.");
    m.def("layer_norm", &layer_norm, "x"_a.none(), "gamma"_a.none(), "beta"_a.none(), "eps"_a, "out"_a.none(),
          "threads"_a = 1,
          nb::sig("def layer_norm(x: numpy.ndarray, gamma: numpy.ndarray, beta: numpy.ndarray, eps: float, "
                  "out: numpy.ndarray, threads: int = 1) -> None"),
          "LayerNorm over the rows of x (T, D); out may be x.");
    m.def("multihead_attention", &multihead_attention, "q"_a.none(), "k"_a.none(), "v"_a.none(), "heads"_a, "causal"_a,
          "chunk"_a, "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def multihead_attention(q: numpy.ndarray, k: numpy.ndarray, v: numpy.ndarray, heads: int, causal: bool, "
                  "chunk: int, out: numpy.ndarray, threads: int = 1, isa: str = 'auto') -> None"),
          "softmax(q k^T / sqrt(Dh)) v per head; q, out (B, Nq, H*Dh), k, v (B, Nk, H*Dh); scores held for at most\n"
          "chunk query rows (0: all); causal: query i sees keys <= i.");
    m.def("geglu", &geglu, "x"_a.none(), "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def geglu(x: numpy.ndarray, out: numpy.ndarray, threads: int = 1, isa: str = 'auto') -> None"),
          "out (T, F) = x[:, :F] * gelu_erf(x[:, F:]) for x (T, 2F).");
    m.def("silu", &silu, "x"_a.none(), "out"_a.none(), "threads"_a = 1, "isa"_a = "auto",
          nb::sig("def silu(x: numpy.ndarray, out: numpy.ndarray, threads: int = 1, isa: str = 'auto') -> None"),
          "out = x * sigmoid(x), any shape; out may be x.");
    m.def("guided_update", &guided_update, "x"_a.none(), "uncond"_a.none(), "cond"_a.none(), "scale"_a, "cx"_a, "cout"_a,
          "noise"_a.none(), "cnoise"_a, "out"_a.none(), "threads"_a = 1,
          nb::sig("def guided_update(x: numpy.ndarray, uncond: numpy.ndarray, cond: numpy.ndarray, scale: float, cx: float, "
                  "cout: float, noise: numpy.ndarray | None, cnoise: float, out: numpy.ndarray, threads: int = 1) -> None"),
          "out = cx*x + cout*(uncond + scale*(cond - uncond)) + cnoise*noise (noise may be None); out may be x.");
}

}  // namespace edgegen_binding
