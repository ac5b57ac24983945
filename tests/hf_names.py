"""GGUF tensor names of a Hugging Face Llama/Qwen2 checkpoint's tensors, written out independently
of the converter's own table (converters/tensor_names.py) so that tests check it."""
from __future__ import annotations

HF_BLOCK = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
            "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
            "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
            "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight", "self_attn.q_proj.bias": "attn_q.bias",
            "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias"}


def hf_to_gguf_names(n_layers: int) -> dict[str, str]:
    """HF parameter name -> GGUF tensor name, for a model of ``n_layers`` blocks."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    for i in range(n_layers):
        names.update({f"model.layers.{i}.{h}": f"blk.{i}.{g}" for h, g in HF_BLOCK.items()})
    return names


def gguf_to_hf_names(n_layers: int) -> dict[str, str]:
    return {g: h for h, g in hf_to_gguf_names(n_layers).items()}
