"""edgegen against llama.cpp (llama-cpp-python) on the same GGUF files: logits, greedy tokens, tokenizer.

Both engines' CPU matmuls round the activations to 8-bit blocks for the quantized types, the
same way (edgegen follows llama.cpp's x86 rounding), so K-quant files agree to float32 rounding
on most models; the 32-value formats still part by about 1e-2 from some position on (a single
rounding difference, then carried by attention), so their tolerances are measured, with
headroom. A greedy token may differ only where the two best logits are a near tie, which
``test_greedy_tokens_agree`` checks token by token.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgegen

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install '.[llamacpp]')")
pytest.importorskip("transformers")
from real_model.reference import greedy  # noqa: E402  (needs llama_cpp, checked above)

from edgegen.backends.llamacpp import open_llama  # noqa: E402

PROMPT = "The keeper was a quiet man who read on calm days, and climbed 112 steps on stormy ones."
N_CTX = 128
N_GREEDY = 48
GGML_TYPE_F32 = 0   # llama.cpp's KV cache in F32, as edgegen's, so F32 files compare without F16 rounding
# max |edgegen - llama.cpp| / max |llama.cpp| over all positions; measured at most 1.5e-6 (f32),
# 1.2e-3 (f16), 1.2e-2 (q8_0, q4_0) and 2.2e-2 (q4_k_m; 3.6e-7 on two of the three models)
TOLERANCE = {"f32": 1e-5, "f16": 5e-3, "q8_0": 3e-2, "q4_0": 3e-2, "q4_k_m": 4e-2}
# a greedy mismatch is allowed only where edgegen's two candidates are this close, relative to the
# logit range at that step (measured at most 2e-3); f32/f16 must match exactly
NEAR_TIE = {"f32": 0.0, "f16": 0.0, "q8_0": 1e-2, "q4_0": 1e-2, "q4_k_m": 1e-2}
# hidden 256 so that the K-quant types (256-value blocks) are used, not their fallbacks
SHAPE = dict(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512)
CASES = [("llama", "bpe"), ("llama", "spm"), ("qwen2", "bpe")]
QUANTS = list(TOLERANCE)


@pytest.fixture(scope="module")
def gguf_256(tmp_path_factory):
    """Tiny models with 256-wide rows, converted once per module: gguf_256(arch, tokenizer, quant)."""
    from tiny_models import make_tiny_hf

    from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
    made: dict[tuple, object] = {}

    def get(arch: str, tokenizer: str, quant: str):
        hf_key = (arch, tokenizer)
        if hf_key not in made:
            made[hf_key] = make_tiny_hf(tmp_path_factory.mktemp(f"hf256-{arch}-{tokenizer}"), arch=arch,
                                        tokenizer=tokenizer, seed=1, **SHAPE)
        key = (arch, tokenizer, quant)
        if key not in made:
            out = tmp_path_factory.mktemp("gguf256") / f"{arch}-{tokenizer}-{quant}.gguf"
            made[key] = convert_hf_to_gguf(made[hf_key], out, quant=quant, progress=False).output
        return made[key]
    return get


def llama_cpp_model(path, **kw):
    return open_llama(path, n_ctx=N_CTX, n_threads=2, n_threads_batch=2, verbose=False,
                      type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, **kw)


def open_case(path):
    """The file, edgegen's model of it and the prompt's ids."""
    ours = edgegen.load(path, threads=2, n_ctx=N_CTX)
    return path, ours, ours.tokenizer.encode(PROMPT)


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("arch,tokenizer", CASES)
def test_logits_agree(gguf_256, arch, tokenizer, quant):
    path, ours, ids = open_case(gguf_256(arch, tokenizer, quant))
    llm = llama_cpp_model(path, logits_all=True)
    llm.eval(ids)
    theirs = np.asarray(llm.scores[:len(ids)], dtype=np.float32)
    mine = ours.logits(ids)
    assert mine.shape == theirs.shape
    assert np.abs(mine - theirs).max() / np.abs(theirs).max() < TOLERANCE[quant]
    if quant in ("f32", "f16"):
        assert (mine.argmax(axis=1) == theirs.argmax(axis=1)).all()


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("arch,tokenizer", CASES)
def test_greedy_tokens_agree(gguf_256, arch, tokenizer, quant):
    path, ours, ids = open_case(gguf_256(arch, tokenizer, quant))
    theirs = greedy(llama_cpp_model(path, logits_all=True), ids, N_GREEDY)
    mine = [t.id for t in ours.generate(ids, max_tokens=N_GREEDY, ignore_eos=True)]
    if quant in ("f32", "f16"):
        assert mine == theirs
        return
    # Teacher-forced on llama.cpp's sequence: each of its tokens is edgegen's argmax or a near tie.
    logits = ours.logits(ids + theirs)[len(ids) - 1:-1]
    span = logits.max(axis=1) - logits.min(axis=1)
    gap = logits.max(axis=1) - logits[np.arange(N_GREEDY), theirs]
    assert (gap <= NEAR_TIE[quant] * span).all(), f"largest gap {np.max(gap / span):.3g} of the logit range"


SENTENCES = [
    "Hello world",
    "  two leading spaces,\ttabs\nand newlines\n\n",
    "Numbers: 3.14159, 42 and 1,000,000!",
    "naïve café — “quotes” and emoji 😀 日本語",
]


@pytest.mark.parametrize("arch,tokenizer", CASES)
def test_tokenizer_agrees(gguf_256, arch, tokenizer):
    path = gguf_256(arch, tokenizer, "q8_0")
    ours = edgegen.load(path).tokenizer
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    for text in SENTENCES:
        ids = ours.encode(text)
        assert ids == llm.tokenize(text.encode(), add_bos=ours.add_bos, special=False), text
        assert ours.decode(ids).encode() == llm.detokenize(ids), text
