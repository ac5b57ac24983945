"""CLIP's text encoder (transformers' CLIPTextModel) over edgegen's layer operations.

    x = token_embedding[ids] + position_embedding[:L]                 (B, L, D)
    for each layer (pre-LN):
        x = x + out_proj(attention(q, k, v, causal))   on layer_norm1(x)
        x = x + fc2(act(fc1(layer_norm2(x))))          act: quick_gelu (SD 1.x) or gelu (SD 2.x)
    last_hidden_state = final_layer_norm(x)                           (B, L, D)

Tensor names are those of the text_encoder's model.safetensors ("text_model.embeddings...").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgegen.errors import UnsupportedModelError, UsageError

from .ops import Ops
from .unet_blocks import LayerNorm, Linear, Params

# hidden_act -> how the MLP applies it (transformers' ACT2FN names)
ACTIVATIONS: dict[str, Callable[[Ops, np.ndarray], np.ndarray]] = {
    "quick_gelu": lambda ops, x: ops.quick_gelu(x),
    "gelu": lambda ops, x: ops.gelu(x),
    "gelu_new": lambda ops, x: ops.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda ops, x: ops.gelu(x, approximate="tanh"),
}
PREFIX = "text_model"


def _int(d: dict, path: Path, key: str, default: Any = ...) -> int:
    value = d.get(key, default)
    if value is ... or isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UnsupportedModelError(f"{path}: field {key!r} should be a positive integer, found {d.get(key)!r}")
    return value


@dataclass(frozen=True)
class ClipTextConfig:
    vocab_size: int
    hidden_size: int          # D
    intermediate_size: int    # F
    num_layers: int
    num_heads: int
    max_position_embeddings: int
    hidden_act: str
    layer_norm_eps: float
    source: str = "text_encoder"

    @classmethod
    def from_hf_config(cls, d: dict, path: Path) -> "ClipTextConfig":
        """From text_encoder/config.json (a CLIPTextModel's)."""
        archs = d.get("architectures") or ["CLIPTextModel"]
        if archs != ["CLIPTextModel"]:
            raise UnsupportedModelError(f"{path}: field 'architectures' is {archs!r}; edgegen runs CLIPTextModel")
        act = d.get("hidden_act", "quick_gelu")
        if act not in ACTIVATIONS:
            raise UnsupportedModelError(f"{path}: field 'hidden_act' is {act!r}; supported: {', '.join(ACTIVATIONS)}")
        hidden, heads = _int(d, path, "hidden_size", 512), _int(d, path, "num_attention_heads", 8)
        if hidden % heads:
            raise UnsupportedModelError(f"{path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        return cls(vocab_size=_int(d, path, "vocab_size", 49408), hidden_size=hidden,
                   intermediate_size=_int(d, path, "intermediate_size", 2048),
                   num_layers=_int(d, path, "num_hidden_layers", 12), num_heads=heads,
                   max_position_embeddings=_int(d, path, "max_position_embeddings", 77),
                   hidden_act=act, layer_norm_eps=float(d.get("layer_norm_eps", 1e-5)),
                   source=str(Path(path).parent))


@dataclass(frozen=True)
class _Layer:
    ln1: LayerNorm            # (D,)
    q: Linear                 # (D, D)
    k: Linear                 # (D, D)
    v: Linear                 # (D, D)
    out: Linear               # (D, D)
    ln2: LayerNorm            # (D,)
    fc1: Linear               # (F, D)
    fc2: Linear               # (D, F)

    @classmethod
    def load(cls, p: Params, prefix: str, cfg: ClipTextConfig) -> "_Layer":
        d, f, eps, a = cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps, f"{prefix}.self_attn"
        return cls(LayerNorm.load(p, f"{prefix}.layer_norm1", d, eps),
                   Linear.load(p, f"{a}.q_proj", d, d), Linear.load(p, f"{a}.k_proj", d, d),
                   Linear.load(p, f"{a}.v_proj", d, d), Linear.load(p, f"{a}.out_proj", d, d),
                   LayerNorm.load(p, f"{prefix}.layer_norm2", d, eps),
                   Linear.load(p, f"{prefix}.mlp.fc1", d, f), Linear.load(p, f"{prefix}.mlp.fc2", f, d))


class NativeClipTextEncoder:
    """TextEncoder (components.py): ids int64 (B, L) -> last_hidden_state float32 (B, L, D)."""

    def __init__(self, config: ClipTextConfig, ops: Ops, token_embedding: np.ndarray,
                 position_embedding: np.ndarray, layers: list[_Layer], final_norm: LayerNorm):
        self.config, self.ops = config, ops
        self.hidden_size = config.hidden_size
        self.max_length = config.max_position_embeddings
        self.token_embedding = token_embedding          # (V, D) float32
        self.position_embedding = position_embedding    # (P, D) float32
        self.layers, self.final_norm = layers, final_norm
        self._act = ACTIVATIONS[config.hidden_act]

    @classmethod
    def from_tensors(cls, config: ClipTextConfig, tensors: Mapping[str, np.ndarray], ops: Ops,
                     dtype: str = "f32") -> "NativeClipTextEncoder":
        p, d = Params(tensors, dtype, config.source), config.hidden_size
        layers = [_Layer.load(p, f"{PREFIX}.encoder.layers.{i}", config) for i in range(config.num_layers)]
        tok = p.array(f"{PREFIX}.embeddings.token_embedding.weight", (config.vocab_size, d))
        pos = p.array(f"{PREFIX}.embeddings.position_embedding.weight", (config.max_position_embeddings, d))
        return cls(config, ops, tok, pos, layers,
                   LayerNorm.load(p, f"{PREFIX}.final_layer_norm", d, config.layer_norm_eps))

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise UsageError(f"text encoder: expected integer token ids (B, L), found {ids.dtype} {ids.shape}")
        b, n = ids.shape
        if not 0 < n <= self.max_length:
            raise UsageError(f"text encoder: {n} tokens; expected 1 to {self.max_length} (max_position_embeddings)")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise UsageError(f"text encoder: token ids must lie in [0, {self.config.vocab_size}), "
                             f"found {ids.min()}..{ids.max()}")
        x = self.token_embedding[ids] + self.position_embedding[:n]       # (B, L, D)
        for layer in self.layers:
            x = self._layer(layer, x)
        return self.final_norm(self.ops, x)

    def _layer(self, layer: _Layer, x: np.ndarray) -> np.ndarray:
        ops = self.ops
        # ---- causal self-attention (pre-LN) ----
        h = layer.ln1(ops, x)
        a = ops.attention(layer.q(ops, h), layer.k(ops, h), layer.v(ops, h), self.config.num_heads, causal=True)
        x = x + layer.out(ops, a)
        # ---- MLP ----
        h = self._act(ops, layer.fc1(ops, layer.ln2(ops, x)))
        return x + layer.fc2(ops, h)
