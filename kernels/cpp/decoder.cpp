// decoder_forward: edgegen/models/llama.py forward(), step for step, in C++.
#include "decoder.h"

#include <cmath>
#include <cstring>

#include "attention.h"
#include "norm_rope.h"
#include "quant_dot.h"

namespace edgegen {
namespace {

void linear(const Matrix& w, const float* x, int64_t T, float* out, const float* bias, int threads,
            const DotTable* dots) {
    matmul(*w.fmt, w.data, w.rows, w.cols, x, T, out, threads, dots);
    if (bias == nullptr) return;
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t n = 0; n < w.rows; ++n) out[t * w.rows + n] += bias[n];
    }
}

void add_into(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

void decoder_forward(const Decoder& m, const int32_t* tokens, int64_t T, int64_t pos0, float* k_cache,
                     float* v_cache, int64_t capacity, bool all_logits, float* logits, int threads,
                     const DotTable* dots, const DotTable* attention_dots) {
    const DecoderShape& c = m.shape;
    const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim, half = c.n_rot / 2;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
    const int64_t layer_cache = c.n_kv_heads * capacity * c.head_dim;  // floats per layer

    // activations, all (T, width) row-major
    std::vector<float> x(T * c.dim), h(T * c.dim), q(T * q_dim), k(T * kv_dim), v(T * kv_dim), att(T * q_dim);
    std::vector<float> gate(T * c.ffn_dim), up(T * c.ffn_dim);
    // RoPE angles of these positions, shared by every layer's q and k
    std::vector<int32_t> positions(T);
    for (int64_t t = 0; t < T; ++t) positions[t] = static_cast<int32_t>(pos0 + t);
    std::vector<double> cs(T * half), sn(T * half);
    rope_angles(positions.data(), T, c.n_rot, c.rope_theta, cs.data(), sn.data());

    // token embeddings: x (T, dim)
    get_rows(*m.token_embd.fmt, m.token_embd.data, c.dim, tokens, T, x.data(), threads);

    for (size_t i = 0; i < m.layers.size(); ++i) {
        const DecoderLayer& L = m.layers[i];
        float* kc = k_cache + i * layer_cache;  // (n_kv_heads, capacity, head_dim)
        float* vc = v_cache + i * layer_cache;

        // attention: norm, project, rotate, append to the cache, attend, project back
        rmsnorm(x.data(), L.attn_norm, c.rms_eps, h.data(), T, c.dim, threads);
        linear(L.wq, h.data(), T, q.data(), L.bq, threads, dots);
        linear(L.wk, h.data(), T, k.data(), L.bk, threads, dots);
        linear(L.wv, h.data(), T, v.data(), L.bv, threads, dots);
        rope_rotate(q.data(), cs.data(), sn.data(), T, c.n_heads, c.head_dim, c.n_rot, c.rope_style, threads);
        rope_rotate(k.data(), cs.data(), sn.data(), T, c.n_kv_heads, c.head_dim, c.n_rot, c.rope_style, threads);
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t g = 0; g < c.n_kv_heads; ++g) {
                const int64_t dst = (g * capacity + pos0 + t) * c.head_dim, src = (t * c.n_kv_heads + g) * c.head_dim;
                std::memcpy(kc + dst, k.data() + src, c.head_dim * sizeof(float));
                std::memcpy(vc + dst, v.data() + src, c.head_dim * sizeof(float));
            }
        }
        attention(q.data(), kc, vc, T, c.n_heads, c.n_kv_heads, capacity, c.head_dim, pos0, scale, att.data(), threads,
                  attention_dots);
        linear(L.wo, att.data(), T, h.data(), nullptr, threads, dots);
        add_into(x.data(), h.data(), T * c.dim);

        // feed-forward: norm, SwiGLU, project back
        rmsnorm(x.data(), L.ffn_norm, c.rms_eps, h.data(), T, c.dim, threads);
        linear(L.gate, h.data(), T, gate.data(), nullptr, threads, dots);
        linear(L.up, h.data(), T, up.data(), nullptr, threads, dots);
        swiglu(gate.data(), up.data(), gate.data(), T * c.ffn_dim, threads, attention_dots);
        linear(L.down, gate.data(), T, h.data(), nullptr, threads, dots);
        add_into(x.data(), h.data(), T * c.dim);
    }

    // final norm and the output projection of every row or the last
    const int64_t first = all_logits ? 0 : T - 1, rows = T - first;
    rmsnorm(x.data() + first * c.dim, m.output_norm, c.rms_eps, h.data(), rows, c.dim, threads);
    linear(m.output, h.data(), rows, logits, nullptr, threads, dots);
}

}  // namespace edgegen
