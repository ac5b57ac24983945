"""Llama-family decoder (Llama, Mistral, SmolLM, TinyLlama shapes; Qwen2 adds q/k/v biases).

The forward pass reads top to bottom; weights stay in the file's memory map in their
stored tensor type and every product runs on the quantized blocks in place.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgegen.constants import Arch, GGMLType, Key, RopeStyle
from edgegen.errors import ModelFileError, UnsupportedModelError
from edgegen.gguf_file import GGUFFile, QTensor
from edgegen.kernels import Kernels
from edgegen.kv_cache import KVCache

# What differs between the architectures this family runs: data, not branches.
ARCH_TRAITS: dict[Arch, dict] = {
    Arch.LLAMA: {"rope_style": RopeStyle.NORMAL, "attn_bias": False},
    Arch.QWEN2: {"rope_style": RopeStyle.NEOX, "attn_bias": True},
}
DEFAULT_RMS_EPS = 1e-5
DEFAULT_ROPE_THETA = 10000.0


@dataclass(frozen=True)
class LlamaConfig:
    arch: Arch
    vocab_size: int
    dim: int                 # hidden size
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    context_length: int      # what the model was trained for
    rms_eps: float
    rope_theta: float
    n_rot: int               # leading dims of each head that RoPE rotates
    rope_style: RopeStyle
    attn_bias: bool
    tied_embeddings: bool    # no output.weight: logits reuse token_embd

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> "LlamaConfig":
        arch_name = f.require(Key.ARCHITECTURE.value)
        try:
            arch = Arch(arch_name)
        except ValueError:
            known = ", ".join(a.value for a in Arch)
            raise UnsupportedModelError(f"{f.path.name}: architecture '{arch_name}' is not supported (supported: {known})") from None
        meta = f.metadata

        def need(key: Key) -> int:
            value = f.require(key.of(arch))
            if not isinstance(value, int) or value <= 0:
                raise ModelFileError(f"{f.path.name}: metadata '{key.of(arch)}' must be a positive integer, found {value!r}")
            return value

        dim, n_heads = need(Key.EMBEDDING_LENGTH), need(Key.HEAD_COUNT)
        n_kv_heads = meta.get(Key.HEAD_COUNT_KV.of(arch), n_heads)
        if n_kv_heads <= 0 or n_heads % n_kv_heads:
            raise ModelFileError(f"{f.path.name}: head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}")
        head_dim = meta.get(Key.KEY_LENGTH.of(arch), dim // n_heads)
        if meta.get(Key.VALUE_LENGTH.of(arch), head_dim) != head_dim:
            raise UnsupportedModelError(f"{f.path.name}: different key and value head sizes are not supported")
        embd = f.tensors.get("token_embd.weight")
        if embd is None:
            raise ModelFileError(f"{f.path.name}: missing tensor 'token_embd.weight'")
        vocab = meta.get(Key.VOCAB_SIZE.of(arch), embd.rows)
        n_rot = meta.get(Key.ROPE_DIMENSION_COUNT.of(arch), head_dim)
        if n_rot % 2 or n_rot > head_dim:
            raise ModelFileError(f"{f.path.name}: rope.dimension_count {n_rot} must be even and at most the head size {head_dim}")
        return cls(
            arch=arch, vocab_size=int(vocab), dim=dim, n_layers=need(Key.BLOCK_COUNT), n_heads=n_heads,
            n_kv_heads=int(n_kv_heads), head_dim=int(head_dim), ffn_dim=need(Key.FEED_FORWARD_LENGTH),
            context_length=need(Key.CONTEXT_LENGTH),
            rms_eps=float(meta.get(Key.RMS_EPS.of(arch), DEFAULT_RMS_EPS)),
            rope_theta=float(meta.get(Key.ROPE_FREQ_BASE.of(arch), DEFAULT_ROPE_THETA)),
            n_rot=int(n_rot), tied_embeddings="output.weight" not in f.tensors,
            **ARCH_TRAITS[arch],
        )


@dataclass(frozen=True)
class Layer:
    attn_norm: np.ndarray        # (dim,) f32
    wq: QTensor                  # (q_dim, dim)
    wk: QTensor                  # (kv_dim, dim)
    wv: QTensor                  # (kv_dim, dim)
    wo: QTensor                  # (dim, q_dim)
    bq: np.ndarray | None        # (q_dim,) qwen2 only
    bk: np.ndarray | None        # (kv_dim,)
    bv: np.ndarray | None        # (kv_dim,)
    ffn_norm: np.ndarray         # (dim,) f32
    w_gate: QTensor              # (ffn_dim, dim)
    w_up: QTensor                # (ffn_dim, dim)
    w_down: QTensor              # (dim, ffn_dim)

    @property
    def matrices(self) -> tuple[QTensor, ...]:
        """The layer's weight matrices in the compiled decoder's order: q, k, v, o, gate, up, down."""
        return (self.wq, self.wk, self.wv, self.wo, self.w_gate, self.w_up, self.w_down)


@dataclass(frozen=True)
class Weights:
    token_embd: QTensor          # (vocab, dim)
    layers: tuple[Layer, ...]
    output_norm: np.ndarray      # (dim,) f32
    output: QTensor              # (vocab, dim); token_embd itself when tied

    @classmethod
    def from_gguf(cls, f: GGUFFile, c: LlamaConfig) -> "Weights":
        def vec(name: str, n: int) -> np.ndarray:
            return np.ascontiguousarray(f.tensor(name, (1, n)).to_float32()[0])

        layers = []
        for i in range(c.n_layers):
            p = f"blk.{i}."
            bias = (lambda name, n: vec(p + name, n)) if c.attn_bias else (lambda name, n: None)
            layers.append(Layer(
                attn_norm=vec(p + "attn_norm.weight", c.dim),
                wq=f.tensor(p + "attn_q.weight", (c.q_dim, c.dim)),
                wk=f.tensor(p + "attn_k.weight", (c.kv_dim, c.dim)),
                wv=f.tensor(p + "attn_v.weight", (c.kv_dim, c.dim)),
                wo=f.tensor(p + "attn_output.weight", (c.dim, c.q_dim)),
                bq=bias("attn_q.bias", c.q_dim), bk=bias("attn_k.bias", c.kv_dim), bv=bias("attn_v.bias", c.kv_dim),
                ffn_norm=vec(p + "ffn_norm.weight", c.dim),
                w_gate=f.tensor(p + "ffn_gate.weight", (c.ffn_dim, c.dim)),
                w_up=f.tensor(p + "ffn_up.weight", (c.ffn_dim, c.dim)),
                w_down=f.tensor(p + "ffn_down.weight", (c.dim, c.ffn_dim)),
            ))
        embd = f.tensor("token_embd.weight", (c.vocab_size, c.dim))
        output = embd if c.tied_embeddings else f.tensor("output.weight", (c.vocab_size, c.dim))
        return cls(token_embd=embd, layers=tuple(layers), output_norm=vec("output_norm.weight", c.dim), output=output)


def _linear(k: Kernels, w: QTensor, x: np.ndarray, threads: int, bias: np.ndarray | None = None) -> np.ndarray:
    out = np.empty((x.shape[0], w.rows), dtype=np.float32)
    k.matmul(w.data, int(w.qtype), w.cols, x, out, threads)
    if bias is not None:
        out += bias
    return out


def forward(c: LlamaConfig, w: Weights, k: Kernels, cache: KVCache, tokens: np.ndarray, pos0: int,
            threads: int, all_logits: bool) -> np.ndarray:
    """Run ``tokens`` (T,) int32 at positions pos0.. ; append their K/V to ``cache``.

    Returns logits (T, vocab) if ``all_logits`` else (1, vocab) for the last token.
    """
    T = tokens.shape[0]
    positions = np.arange(pos0, pos0 + T, dtype=np.int32)
    scale = 1.0 / math.sqrt(c.head_dim)

    # token embeddings: x (T, dim)
    x = np.empty((T, c.dim), dtype=np.float32)
    k.get_rows(w.token_embd.data, int(w.token_embd.qtype), c.dim, tokens, x, threads)
    h = np.empty_like(x)

    for i, layer in enumerate(w.layers):
        # attention: norm, project, rotate, append to the cache, attend, project back
        k.rmsnorm(x, layer.attn_norm, c.rms_eps, h, threads)
        q = _linear(k, layer.wq, h, threads, layer.bq).reshape(T, c.n_heads, c.head_dim)
        kk = _linear(k, layer.wk, h, threads, layer.bk).reshape(T, c.n_kv_heads, c.head_dim)
        v = _linear(k, layer.wv, h, threads, layer.bv).reshape(T, c.n_kv_heads, c.head_dim)
        k.rope(q, positions, c.n_rot, c.rope_theta, int(c.rope_style), threads)
        k.rope(kk, positions, c.n_rot, c.rope_theta, int(c.rope_style), threads)
        cache.append(i, pos0, kk, v)
        att = np.empty_like(q)
        k.attention(q, cache.keys(i), cache.values(i), pos0, scale, att, threads)
        x += _linear(k, layer.wo, att.reshape(T, c.q_dim), threads)

        # feed-forward: norm, SwiGLU, project back
        k.rmsnorm(x, layer.ffn_norm, c.rms_eps, h, threads)
        gate = _linear(k, layer.w_gate, h, threads)
        up = _linear(k, layer.w_up, h, threads)
        k.swiglu(gate, up, gate, threads)
        x += _linear(k, layer.w_down, gate, threads)

    rows = x if all_logits else x[-1:]
    normed = np.empty_like(rows)
    k.rmsnorm(np.ascontiguousarray(rows), w.output_norm, c.rms_eps, normed, threads)
    return _linear(k, w.output, normed, threads)


class CompiledForward:
    """``forward`` as one C++ call per step (kernels/cpp/decoder.cpp): the same kernels in the
    same order, so the logits equal ``forward``'s with the same C++ kernel table, bit for bit."""

    def __init__(self, c: LlamaConfig, w: Weights, k: Kernels):
        dims = (c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.n_rot, c.vocab_size, c.n_layers, int(c.rope_style))
        mats = [(w.token_embd.data, int(w.token_embd.qtype)), (w.output.data, int(w.output.qtype))]
        vecs: list[np.ndarray | None] = [w.output_norm]
        for layer in w.layers:
            mats += [(t.data, int(t.qtype)) for t in layer.matrices]
            vecs += [layer.attn_norm, layer.ffn_norm, layer.bq, layer.bk, layer.bv]
        self._decoder = k.compiled.make_decoder(dims, c.rms_eps, c.rope_theta, mats, vecs)
        self._options = dict(isa=k.isa, int8_act=k.int8_act)
        self._vocab = c.vocab_size

    def __call__(self, cache: KVCache, tokens: np.ndarray, pos0: int, threads: int,
                 all_logits: bool) -> tuple[np.ndarray, float]:
        """Logits, and the wall time of the C++ call alone (what Python adds is the rest).
        Holds no state of its own: sessions in different threads may share it."""
        T = tokens.shape[0]
        cache.check_all_layers(pos0, T)
        logits = np.empty((T if all_logits else 1, self._vocab), dtype=np.float32)
        t0 = time.perf_counter()
        self._decoder.forward(tokens, pos0, cache.k, cache.v, logits, all_logits, threads, **self._options)
        seconds = time.perf_counter() - t0
        cache.commit(pos0, T)
        return logits, seconds
