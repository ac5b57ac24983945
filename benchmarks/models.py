"""Random-weight checkpoints with the shapes of real models, built once and cached.

    hf_dir = build_hf(SHAPES["smollm"], cache_dir)
    gguf = build_gguf(SHAPES["smollm"], "q4_k_m", cache_dir)

Speed depends on shapes and tensor types, not on trained values, so the benchmark needs no
download: transformers builds a ``LlamaForCausalLM`` from the shape with a fixed seed and HF's
default init (std 0.02, norm weights 1), saved in fp16 safetensors; the tokenizer is the small
BPE one the tests train (tests/tiny_models.py), and the converter pads the vocabulary up to
``vocab`` with [PADi] tokens. Then edgegen's converter writes each quant.

Cache layout: ``<cache_dir>/<name>-<key>/hf/`` and ``<cache_dir>/<name>-<key>/<quant>.gguf``,
where ``key`` hashes the shape, seed and dtype, so a changed shape never reuses an old file.
A folder or file appears under its final name only once complete (written under a temporary
name, then renamed). The converter is not part of the key: pass ``rebuild=True`` after
changing it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = ROOT / "tests"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".models"
SEED = 0
INIT_STD = 0.02               # transformers' default initializer_range, and SmolLM's / TinyLlama's
RMS_EPS = 1e-5
SAVE_DTYPE = "float16"        # halves TinyLlama on disk (2.2 GB instead of 4.4 GB); the converter reads F16
TOKENIZER_VOCAB = 512         # trained pieces; the converter pads up to the model's vocab
KEY_CHARS = 10
QUANTS = ("f16", "q8_0", "q4_0", "q4_k_m")
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json")

Log = Callable[[str], None]


@dataclass(frozen=True)
class ModelShape:
    name: str
    source: str               # the model whose config.json these numbers come from
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied: bool                # tie_word_embeddings: logits reuse the embedding matrix
    rope_theta: float
    max_pos: int
    tokenizer: str            # tests/tiny_models.py trainer: "bpe" (GPT-2 style) or "spm" (Llama style)


SHAPES: dict[str, ModelShape] = {
    "smollm": ModelShape("smollm", "HuggingFaceTB/SmolLM-135M", hidden=576, layers=30, heads=9, kv_heads=3,
                         ffn=1536, vocab=49152, tied=True, rope_theta=10000.0, max_pos=2048, tokenizer="bpe"),
    "tinyllama": ModelShape("tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", hidden=2048, layers=22, heads=32,
                            kv_heads=4, ffn=5632, vocab=32000, tied=False, rope_theta=10000.0, max_pos=2048,
                            tokenizer="spm"),
}


def shape_for(name: str) -> ModelShape:
    if name not in SHAPES:
        raise ValueError(f"model {name!r} is not a benchmark shape; expected one of {', '.join(SHAPES)}")
    return SHAPES[name]


def model_dir(shape: ModelShape, cache_dir: Path) -> Path:
    spec = json.dumps({"shape": asdict(shape), "seed": SEED, "std": INIT_STD, "dtype": SAVE_DTYPE,
                       "tokenizer_vocab": TOKENIZER_VOCAB}, sort_keys=True)
    key = hashlib.sha256(spec.encode()).hexdigest()[:KEY_CHARS]
    return Path(cache_dir) / f"{shape.name}-{key}"


def _tiny_models():
    """tests/tiny_models.py, which trains the tokenizers the test suite uses."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.append(str(TESTS_DIR))
    import tiny_models
    return tiny_models


def _write_hf(shape: ModelShape, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tm = _tiny_models()
    trainers = {"bpe": tm.train_bpe_tokenizer, "spm": tm.train_spm_tokenizer}
    special_ids = tm._save_tokenizer(trainers[shape.tokenizer](TOKENIZER_VOCAB), shape.tokenizer, out)
    config = LlamaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_pos, rms_norm_eps=RMS_EPS, rope_theta=shape.rope_theta,
        tie_word_embeddings=shape.tied, initializer_range=INIT_STD, torch_dtype=SAVE_DTYPE, **special_ids)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).eval().to(getattr(torch, SAVE_DTYPE))
    model.save_pretrained(out, safe_serialization=True)


def build_hf(shape: ModelShape, cache_dir: Path = DEFAULT_CACHE_DIR, rebuild: bool = False,
             log: Log = print) -> Path:
    """The HF checkpoint folder for ``shape``, built (seconds to a minute) unless cached."""
    out = model_dir(shape, cache_dir) / "hf"
    if out.is_dir() and not rebuild:
        missing = [f for f in HF_FILES if not (out / f).is_file()]
        if missing:
            raise RuntimeError(f"{out}: cached checkpoint lacks {', '.join(missing)}; delete the folder or rebuild")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"building random {shape.name} checkpoint ({shape.source} shapes) in {out} ...")
    tmp = Path(tempfile.mkdtemp(prefix=".hf.", dir=out.parent))
    try:
        _write_hf(shape, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"built {shape.name} checkpoint in {time.perf_counter() - t0:.1f} s")
    return out


def build_gguf(shape: ModelShape, quant: str, cache_dir: Path = DEFAULT_CACHE_DIR, rebuild: bool = False,
               log: Log = print) -> Path:
    """``<quant>.gguf`` for ``shape`` from edgegen's converter, built unless cached (Q4_K: minutes)."""
    from edgegen.converters.hf_to_gguf import convert_hf_to_gguf

    if quant not in QUANTS:
        raise ValueError(f"quant {quant!r} is not benchmarked; expected one of {', '.join(QUANTS)}")
    out = model_dir(shape, cache_dir) / f"{quant}.gguf"
    if out.is_file() and not rebuild:
        return out
    hf_dir = build_hf(shape, cache_dir, rebuild=False, log=log)
    t0 = time.perf_counter()
    log(f"converting {shape.name} to {quant} ...")
    report = convert_hf_to_gguf(hf_dir, out, quant, progress=True)
    log(f"converted {shape.name} {quant} in {time.perf_counter() - t0:.1f} s\n{report.summary()}")
    return out
