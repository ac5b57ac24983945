"""Hugging Face -> GGUF names, as data: architectures, tensor names, and which tensors are permuted.

GGUF names are llama.cpp's (``LLM_TENSOR_NAMES`` in llama-arch.cpp). A HF tensor that no
entry maps and that is not listed in ``IGNORED_HF_SUFFIXES`` stops the conversion: silently
dropping a weight would produce a model that loads and computes the wrong thing.
"""
from __future__ import annotations

import re

from edgegen.constants import Arch

__all__ = [
    "ARCHITECTURES", "GLOBAL_TENSORS", "BLOCK_TENSORS", "IGNORED_HF_SUFFIXES", "PERMUTED_HEADS",
    "REQUIRED_BIASES", "BLOCK_PATTERN", "block_name",
]

# config.json "architectures"[0] -> GGUF general.architecture.
ARCHITECTURES: dict[str, Arch] = {
    "LlamaForCausalLM": Arch.LLAMA,
    "MistralForCausalLM": Arch.LLAMA,
    "Qwen2ForCausalLM": Arch.QWEN2,
}

# Whole-model tensors: HF name -> GGUF name.
GLOBAL_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

# Per-layer tensors: suffix after "model.layers.{i}." -> GGUF suffix after "blk.{i}.".
BLOCK_TENSORS: dict[str, str] = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

# Buffers some checkpoints carry that are recomputed from config at load time.
IGNORED_HF_SUFFIXES: tuple[str, ...] = ("self_attn.rotary_emb.inv_freq",)

# Architectures whose Q/K rows llama.cpp stores permuted for NORMAL (adjacent-pair) RoPE:
# GGUF block suffix -> which config head count splits its rows. Qwen2 uses NEOX RoPE: no entry.
PERMUTED_HEADS: dict[Arch, dict[str, str]] = {
    Arch.LLAMA: {
        "attn_q.weight": "n_heads", "attn_q.bias": "n_heads",
        "attn_k.weight": "n_kv_heads", "attn_k.bias": "n_kv_heads",
    },
    Arch.QWEN2: {},
}

# Per-layer biases an architecture always has (other biases are converted when present).
REQUIRED_BIASES: dict[Arch, tuple[str, ...]] = {
    Arch.LLAMA: (),
    Arch.QWEN2: ("attn_q.bias", "attn_k.bias", "attn_v.bias"),
}

BLOCK_PATTERN = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def block_name(layer: int, gguf_suffix: str) -> str:
    return f"blk.{layer}.{gguf_suffix}"
