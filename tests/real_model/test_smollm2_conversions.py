"""edgegen's conversions of the real SmolLM2-135M-Instruct (Q4_1): requantized GGUF and the
Hugging Face checkpoint that the ONNX export goes through.

References: llama.cpp (perplexity of the requantized file on the same windows), transformers
(logits of the rebuilt checkpoint) and edgegen's native logits of the original file. Kept to
one window pair and short prompts: the file has 30 layers and the suite runs on small CPUs.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgegen
from edgegen.converters.gguf_requant import requantize_gguf
from edgegen.perplexity import perplexity, summarize, window_nll, windows

from real_model.conftest import DATA, N_CTX, THREADS

CTX = 256
N_WINDOWS = 2
# Tolerances not yet calibrated on these 2 windows (the machine was too busy). On the whole text at
# ctx 512 (benchmarks/RESULTS.md) edgegen and llama.cpp differed by 0.21 % on the Q4_1 original:
# both quantize activations to 8-bit blocks, but their kernels sum in different orders.
REQUANT_RTOL = 0.02            # Q8_0 of a 4-bit model cannot gain or lose much precision
LLAMA_CPP_RTOL = 1e-2
LOGIT_ATOL = 2e-3              # transformers float32 vs native float-activation kernels (measured 5e-5 of logits ~33)
PROMPT = "The license grants you a perpetual, worldwide, non-exclusive"


@pytest.fixture(scope="module")
def text_ids(smollm2):
    ids = smollm2.tokenizer.encode((DATA / "apache-2.0.txt").read_text(encoding="utf-8"))
    return ids[: N_WINDOWS * CTX]


@pytest.fixture(scope="module")
def q8_0(smollm2_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-q8_0.gguf"
    requantize_gguf(smollm2_path, out, "q8_0", progress=False)
    return out


def test_q8_0_requantization_keeps_perplexity(smollm2, q8_0, text_ids):
    original = perplexity(smollm2, text_ids, CTX)
    requantized = perplexity(edgegen.load(q8_0, threads=THREADS, n_ctx=N_CTX), text_ids, CTX)
    assert requantized.ppl == pytest.approx(original.ppl, rel=REQUANT_RTOL)


def test_q8_0_perplexity_agrees_with_llama_cpp(reference, q8_0, text_ids):
    ours = perplexity(edgegen.load(q8_0, threads=THREADS, n_ctx=N_CTX), text_ids, CTX)
    llm = reference.open_llama(q8_0, logits_all=True)
    nlls = []
    for win in windows(text_ids, CTX, None):          # SmolLM2's tokenizer adds no BOS
        llm.reset()
        llm.eval(win.tolist())
        nlls.append(window_nll(np.array(llm.scores[:CTX], dtype=np.float32), win))
    assert ours.ppl == pytest.approx(summarize(nlls, CTX).ppl, rel=LLAMA_CPP_RTOL)


def test_hf_checkpoint_logits_equal_native(smollm2, smollm2_path, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from edgegen.converters.gguf_to_hf import gguf_to_hf
    hf_dir = gguf_to_hf(smollm2_path, tmp_path / "hf")
    ids = smollm2.tokenizer.encode(PROMPT)
    assert transformers.AutoTokenizer.from_pretrained(hf_dir)(PROMPT)["input_ids"] == ids
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].numpy()
    # kernels="cpp-float": the same dequantized weights times float32 activations, as transformers
    # computes (the default kernels round activations to 8 bits, as llama.cpp does: logits move by ~2)
    native = edgegen.load(smollm2_path, threads=THREADS, kernels="cpp-float").logits(ids)
    np.testing.assert_allclose(got, native, atol=LOGIT_ATOL, rtol=0)
