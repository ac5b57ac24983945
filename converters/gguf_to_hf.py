"""GGUF file -> Hugging Face checkpoint folder -> ONNX, for ``edgegen convert MODEL.gguf OUT --to onnx``.

    gguf_to_hf("smollm2.gguf", "smollm2-hf")                       # config.json, model.safetensors, tokenizer
    convert_gguf_to_onnx("smollm2.gguf", "smollm2-onnx", "int8")   # via a temporary HF folder

The HF folder is what ``transformers`` and optimum's exporter read:
1. config.json for LlamaForCausalLM / Qwen2ForCausalLM from the GGUF hyper-parameters
   (``LlamaConfig.from_gguf``; partial rotary is refused: transformers' llama has no such option);
2. model.safetensors: every tensor dequantized to float32 (``gguf.quants.dequantize``) under its
   HF name (``tensor_names``, inverted), llama's Q/K rows put back from llama.cpp's adjacent-pair
   RoPE order into HF's half-split order (the inverse of ``hf_to_gguf.permute_for_rope``);
3. tokenizer.json (byte-level BPE: vocab, merges, the pre-tokenizer ``tokenizer.ggml.pre`` names)
   and tokenizer_config.json (special tokens, add_bos/eos, chat template), so that
   ``hf_tokenizer.read_hf_tokenizer`` reads back the GGUF's own tokenizer metadata.
SentencePiece-style ("llama") GGUF tokenizers are refused: their merges are not in the file.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.constants import Arch, Key
from edgegen.errors import ConversionError, UnsupportedModelError
from edgegen.gguf_file import GGUFFile
from edgegen.models.llama import LlamaConfig

from .gguf_requant import dequantized_tensors, read_gguf
from .hf_tokenizer import GPT2, PRE_TOKENIZERS, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from .tensor_names import BLOCK_TENSORS, GLOBAL_TENSORS, PERMUTED_HEADS

__all__ = ["gguf_to_hf", "convert_gguf_to_onnx", "unpermute_for_rope", "hf_config"]

HF_ARCHITECTURES: dict[Arch, tuple[str, str]] = {   # GGUF arch -> (config "architectures"[0], model_type)
    Arch.LLAMA: ("LlamaForCausalLM", "llama"),
    Arch.QWEN2: ("Qwen2ForCausalLM", "qwen2"),
}
HF_NAMES: dict[str, str] = {gguf: hf for hf, gguf in GLOBAL_TENSORS.items()}
HF_BLOCK_NAMES: dict[str, str] = {gguf: hf for hf, gguf in BLOCK_TENSORS.items()}
WEIGHTS_FILE = "model.safetensors"
TOKEN_CONTROL, TOKEN_USER_DEFINED = 3, 4      # gguf.TokenType
_ROPE_SCALING_KEYS = ("rope.scaling.type", "rope.scaling.factor")


def unpermute_for_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's adjacent-pair Q/K rows -> HF's half-split rows: row (head, i, half) moves back
    to (head, half, i). Inverse of ``hf_to_gguf.permute_for_rope``; weights and biases alike."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_config(cfg: LlamaConfig, meta: dict[str, Any], source: str) -> dict[str, Any]:
    """config.json for ``cfg`` (checked to be one transformers can express)."""
    arch = cfg.arch.value
    if cfg.n_rot != cfg.head_dim:
        raise UnsupportedModelError(f"{source}: rope.dimension_count {cfg.n_rot} < head size {cfg.head_dim} "
                                    "(partial rotary) has no transformers llama equivalent")
    scaling = [f"{arch}.{k}" for k in _ROPE_SCALING_KEYS if f"{arch}.{k}" in meta]
    if scaling and meta.get(f"{arch}.rope.scaling.type") not in (None, "none"):
        raise UnsupportedModelError(f"{source}: RoPE scaling ({scaling[0]}) is not converted")
    if cfg.arch == Arch.LLAMA and cfg.attn_bias:
        raise UnsupportedModelError(f"{source}: llama with attention biases has no transformers equivalent")
    hf_arch, model_type = HF_ARCHITECTURES[cfg.arch]
    out = {"architectures": [hf_arch], "model_type": model_type, "vocab_size": cfg.vocab_size,
           "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
           "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
           "max_position_embeddings": cfg.context_length, "rms_norm_eps": cfg.rms_eps, "rope_theta": cfg.rope_theta,
           "tie_word_embeddings": cfg.tied_embeddings, "hidden_act": "silu", "torch_dtype": "float32",
           "use_cache": True, "attention_bias": False, "mlp_bias": False}
    if isinstance(meta.get(Key.NAME.value), str):
        out["_name_or_path"] = meta[Key.NAME.value]
    for kind, key in (("bos", Key.BOS_ID), ("eos", Key.EOS_ID), ("pad", Key.PAD_ID)):
        if isinstance(meta.get(key.value), int):
            out[f"{kind}_token_id"] = meta[key.value]
    return out


def _hf_name(name: str, source: str) -> str:
    if name in HF_NAMES:
        return HF_NAMES[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in HF_BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{HF_BLOCK_NAMES[parts[2]]}"
    raise ConversionError(f"{source}: tensor {name!r} has no Hugging Face equivalent")


def _hf_tensors(path: Path, cfg: LlamaConfig) -> dict[str, np.ndarray]:
    """HF name -> float32 tensor, Q/K rows back in HF order."""
    permuted = PERMUTED_HEADS[cfg.arch]
    tensors = {}
    for name, _, data in dequantized_tensors(read_gguf(path), path):
        suffix = name.split(".", 2)[2] if name.startswith("blk.") else name
        if suffix in permuted:
            data = unpermute_for_rope(data, getattr(cfg, permuted[suffix]))
        tensors[_hf_name(name, path.name)] = np.ascontiguousarray(data, dtype=np.float32)
    return tensors


def _pre_tokenizer(pre: str, source: str) -> dict[str, Any]:
    """tokenizer.json's pre_tokenizer for llama.cpp's ``tokenizer.ggml.pre`` name."""
    steps = {name: s for s, name in PRE_TOKENIZERS.items()}.get(pre)
    if steps is None:
        raise UnsupportedModelError(f"{source}: tokenizer.ggml.pre {pre!r} is not one edgegen can write as "
                                    f"tokenizer.json (known: {', '.join(PRE_TOKENIZERS.values())})")
    out = []
    for kind, arg in steps:
        if kind == "ByteLevel":
            out.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": arg})
        elif kind == "Digits":
            out.append({"type": "Digits", "individual_digits": arg})
        else:
            out.append({"type": "Split", "pattern": {"Regex": arg}, "behavior": "Isolated", "invert": False})
    return out[0] if len(out) == 1 else {"type": "Sequence", "pretokenizers": out}


def tokenizer_files(meta: dict[str, Any], source: str) -> tuple[dict, dict]:
    """(tokenizer.json, tokenizer_config.json) for a GGUF's byte-level BPE tokenizer."""
    model = meta.get(Key.TOKENIZER_MODEL.value)
    if model != GPT2:
        raise UnsupportedModelError(f"{source}: tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') "
                                    "tokenizers can be written as tokenizer.json")
    tokens, types = meta[Key.TOKENS.value], meta.get(Key.TOKEN_TYPE.value) or [1] * len(meta[Key.TOKENS.value])
    vocab: dict[str, int] = {}
    for i, text in enumerate(tokens):
        if vocab.setdefault(text, i) != i:
            raise ConversionError(f"{source}: token {text!r} appears twice (ids {vocab[text]} and {i})")
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": types[i] == TOKEN_CONTROL}
             for i in range(len(tokens)) if types[i] in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
           "pre_tokenizer": _pre_tokenizer(meta.get(Key.TOKENIZER_PRE.value, "default"), source),
           "post_processor": byte_level, "decoder": byte_level,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": [m.split(" ") for m in meta.get(Key.MERGES.value, [])]}}
    tcfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                            "add_bos_token": bool(meta.get(Key.ADD_BOS.value, False)),
                            "add_eos_token": bool(meta.get(Key.ADD_EOS.value, False))}
    for kind, key in (("bos", Key.BOS_ID), ("eos", Key.EOS_ID), ("unk", Key.UNK_ID), ("pad", Key.PAD_ID)):
        token_id = meta.get(key.value)
        if isinstance(token_id, int) and 0 <= token_id < len(tokens):
            tcfg[f"{kind}_token"] = tokens[token_id]
    if isinstance(meta.get(Key.CHAT_TEMPLATE.value), str):
        tcfg["chat_template"] = meta[Key.CHAT_TEMPLATE.value]
    return tok, tcfg


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def gguf_to_hf(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the HF checkpoint of the GGUF file ``src`` into the (new or empty) folder ``out_dir``:
    config.json, model.safetensors (float32), tokenizer.json, tokenizer_config.json."""
    from safetensors.numpy import save_file   # a dependency of transformers

    path, out = Path(src), Path(out_dir)
    f = GGUFFile.open(path)                   # edgegen's checks: the model must be one edgegen runs
    cfg = LlamaConfig.from_gguf(f)
    config = hf_config(cfg, f.metadata, path.name)
    tok, tcfg = tokenizer_files(f.metadata, path.name)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out}: exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", config)
    _write_json(out / TOKENIZER_FILE, tok)
    _write_json(out / TOKENIZER_CONFIG_FILE, tcfg)
    save_file(_hf_tensors(path, cfg), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out


def _record_source(out: Path, src: Path) -> None:
    """The export's manifest names the GGUF file, not the temporary HF folder it went through."""
    from edgegen.backends.onnxruntime import MANIFEST_FILE
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["source"] = str(src.resolve())
    manifest["source_format"] = "gguf (via converters/gguf_to_hf.py)"
    tmp = out / f".{MANIFEST_FILE}.partial"
    _write_json(tmp, manifest)
    os.replace(tmp, out / MANIFEST_FILE)


def convert_gguf_to_onnx(src: str | os.PathLike, out_dir: str | os.PathLike, quant: str = "fp32",
                         block_size: int = 32, progress: bool = True):
    """GGUF file -> ONNX folder (``onnx_export.export_onnx`` on a temporary HF folder beside
    ``out_dir``, removed afterwards). Returns export_onnx's report."""
    from .onnx_export import export_onnx

    path, out = Path(src), Path(out_dir)
    if not out.parent.is_dir():
        raise ConversionError(f"{out.parent}: output folder does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".hf", dir=out.parent))
    try:
        hf_dir = gguf_to_hf(path, tmp / "hf")
        report = export_onnx(hf_dir, out, quant=quant, block_size=block_size, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _record_source(out, path)
    return report
