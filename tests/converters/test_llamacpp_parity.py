"""Converted files in llama.cpp itself (through llama-cpp-python): it loads them, its logits match
transformers', and its tokenizer gives the ids the HF tokenizer.json gives."""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.backends.llamacpp import open_llama

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

MODELS = [("llama", "bpe", False), ("llama", "spm", False), ("qwen2", "bpe", False), ("llama", "spm", True),
          ("qwen2", "bpe", True)]
PROMPT = "The keeper was a quiet man who read on calm days, and climbed 112 steps on stormy ones."
GGML_TYPE_F32 = 0   # keep llama.cpp's KV cache in F32 so F32 files are compared without F16 rounding
# max |llama.cpp - transformers| / max |transformers|. F16 files are also run with F16 activations and
# Q8_0 files with Q8_0-quantized activations, which llama.cpp's CPU matmuls use: measured 1e-3 and 3.5e-2.
TOLERANCE = {"f32": 1e-5, "f16": 5e-3, "q8_0": 8e-2}
SENTENCES = [
    "Hello world",
    "The harbour town woke slowly on the first cold morning of the year.",
    "  two leading spaces,\ttabs\nand newlines\n\n",
    "Numbers: 3.14159, 42 and 1,000,000!",
    "naïve café — “quotes” and emoji 😀 日本語",
    "x = f(y) + 2 * z; // code-ish text",
    "",
]


def load(path, **kw):
    return open_llama(path, n_ctx=128, n_threads=2, verbose=False, **kw)


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("arch,tokenizer,tied", MODELS)
def test_llama_cpp_logits_match_transformers(tiny_hf, tiny_gguf, arch, tokenizer, tied, quant):
    hf_dir = tiny_hf(arch, tokenizer, tied)
    ids = tokenizers.Tokenizer.from_file(str(hf_dir / "tokenizer.json")).encode(PROMPT).ids
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    llm = load(tiny_gguf(arch, quant, tokenizer, tied), logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    llm.eval(ids)
    ours = np.asarray(llm.scores[:len(ids)], dtype=np.float32)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() / np.abs(ref).max() < TOLERANCE[quant]
    if quant != "q8_0":
        assert (ours.argmax(axis=1) == ref.argmax(axis=1)).all()


@pytest.mark.parametrize("arch,tokenizer", [("llama", "bpe"), ("llama", "spm"), ("qwen2", "bpe")])
def test_llama_cpp_tokenizer_matches_tokenizer_json(tiny_hf, tiny_gguf, arch, tokenizer):
    hf = tokenizers.Tokenizer.from_file(str(tiny_hf(arch, tokenizer) / "tokenizer.json"))
    llm = load(tiny_gguf(arch, "q4_0", tokenizer), vocab_only=True)
    for text in SENTENCES:
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == hf.encode(text).ids, text
    if tokenizer == "bpe":   # control tokens in the text are parsed as such when special=True
        text = "<|im_start|>user\nHello<|im_end|>"
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == hf.encode(text).ids
    ids = hf.encode(SENTENCES[1]).ids
    assert llm.detokenize(ids).decode() .strip() == SENTENCES[1]
