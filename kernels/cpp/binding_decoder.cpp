// Python binding of the one-call forward pass (decoder.h): edgegen.kernels._cpp.Decoder and
// make_decoder. The arrays a Decoder points into are kept alive by the Decoder object.
#include <nanobind/nanobind.h>

#include "binding_checks.h"
#include "decoder.h"
#include "norm_rope.h"

namespace edgegen_binding {

using namespace nb::literals;

namespace {

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
    const edgegen::DotTable* attention_dots = choose_dots(fn, isa, true);
    nb::gil_scoped_release nogil;
    edgegen::decoder_forward(self.d, ids, T, pos0, f32_out(k_cache), f32_out(v_cache), capacity, all_logits,
                             f32_out(logits), threads, dots,
                             attention_dots);
}

}  // namespace

void bind_decoder(nb::module_& m) {
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
}

}  // namespace edgegen_binding
