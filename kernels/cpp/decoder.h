// The whole Llama-family forward pass in one call: the same sequence of kernels as
// edgegen/models/llama.py forward(), without returning to Python between them (a decode step
// is ~7 kernels per layer; their Python dispatch cost as much as the small ones' work).
#pragma once

#include <cstdint>
#include <vector>

#include "quant_formats.h"
#include "vec_dot.h"

namespace edgegen {

// A weight matrix as stored in the file: rows x cols values of fmt, row-major, used in place.
struct Matrix {
    const uint8_t* data = nullptr;
    const QuantFormat* fmt = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
};

struct DecoderLayer {
    const float* attn_norm;   // (dim,)
    Matrix wq, wk, wv, wo;    // (q_dim, dim), (kv_dim, dim), (kv_dim, dim), (dim, q_dim)
    const float* bq;          // (q_dim,) or nullptr (qwen2 has q/k/v biases)
    const float* bk;          // (kv_dim,) or nullptr
    const float* bv;          // (kv_dim,) or nullptr
    const float* ffn_norm;    // (dim,)
    Matrix gate, up, down;    // (ffn_dim, dim), (ffn_dim, dim), (dim, ffn_dim)
};

struct DecoderShape {
    int64_t dim, n_heads, n_kv_heads, head_dim, ffn_dim, n_rot, vocab;
    double rms_eps, rope_theta;
    int rope_style;
};

struct Decoder {
    DecoderShape shape;
    std::vector<DecoderLayer> layers;
    Matrix token_embd;        // (vocab, dim)
    Matrix output;            // (vocab, dim); token_embd when tied
    const float* output_norm; // (dim,)
};

// Runs tokens (T,) at positions pos0 .. pos0+T-1. Writes their keys and values into rows
// pos0.. of k_cache, v_cache (n_layers, n_kv_heads, capacity, head_dim) and the logits of
// every token (all_logits: logits (T, vocab)) or of the last (logits (1, vocab)).
// `dots`: the matmul table (nullptr: the exact float path); `attention_dots`: the table of
// attention's float dot, axpy and exp and of SwiGLU (nullptr: portable loops). The caller has checked ids, shapes and
// pos0 + T <= capacity.
void decoder_forward(const Decoder& m, const int32_t* tokens, int64_t T, int64_t pos0, float* k_cache,
                     float* v_cache, int64_t capacity, bool all_logits, float* logits, int threads,
                     const DotTable* dots, const DotTable* attention_dots);

}  // namespace edgegen
