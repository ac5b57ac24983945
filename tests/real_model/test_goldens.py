"""64 greedy tokens of SmolLM2-135M-Instruct for three prompts, equal to llama.cpp's.

The goldens (tests/data/smollm2_goldens.json) were recorded by tools/record_smollm2_goldens.py
with llama-cpp-python built for x86 AVX2 (version, build and settings inside the file).
- edgegen on the ``ggml`` kernels (llama.cpp's arithmetic, kernels/ggml_x86.py) must give them
  exactly, and equal live llama.cpp on the kernels that follow the installed build (``ggml``
  for AVX2, ``ggml-avx512`` for AVX-512).
- edgegen's default kernels sum in other orders and part from them at near ties (xfail below,
  strict); at every step the golden token must be their argmax or a near tie. A greedy mismatch
  is reported with the gap between edgegen's two best logits at that step.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.chat import chat_template_for, render_chat
from edgegen.fetch import MODELS

CASE_NAMES = ["raw-capital", "raw-code", "chat-poem"]
# A golden token edgegen does not rank first must be within this fraction of the logit range at
# that step of its best one (as tests/test_llamacpp_agreement.py's NEAR_TIE for Q4_0 and Q8_0).
NEAR_TIE = 1e-2
# Measured 2026-11-23 and 2026-12-06 with llama-cpp-python 0.3.36: the default kernels' greedy
# decoding parts from llama.cpp's at a near tie for every prompt: raw-capital at generated token 5
# (gap 0.25), raw-code at token 0 (gap 0.018), chat-poem at token 0 (gap 0.13). Equality needs
# bit-identical arithmetic: an AVX-512 build of the same llama.cpp parts from the goldens at
# tokens 26, 21 and 23 (benchmarks/RESULTS.md). Beyond summation order the default kernels differ
# from llama.cpp in its Q4_1 min term (block_q8_1's s = f16(d * sum q); edgegen: d * sum q),
# float64 rmsnorm and RoPE, their own exp. Strict: when they match, these pass and the mark must go.
DIVERGES = pytest.mark.xfail(strict=True, reason="default kernels: greedy parts from llama.cpp's at a near tie "
                             "(see NEAR_TIE above and the report); the ggml kernels give the goldens exactly")


def get_case(goldens: dict, name: str) -> dict:
    return next(c for c in goldens["cases"] if c["name"] == name)


def edgegen_prompt_ids(model, case: dict) -> list[int]:
    """The prompt's ids as edgegen makes them: its tokenizer, or its chat path (sandboxed Jinja)."""
    if case["chat_template"]:
        return model.chat_ids(case["messages"])
    return model.tokenizer.encode(case["prompt"], add_bos=case["add_bos"], parse_special=case["parse_special"])


def edgegen_greedy(model, ids: list[int], n: int) -> list[int]:
    return [t.id for t in model.generate(ids, max_tokens=n, ignore_eos=True, temperature=0.0)]


def explain(model, prompt: list[int], ours: list[int], theirs: list[int]) -> str:
    """Where two greedy runs part, and how close edgegen's logits were there."""
    i = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
    logits = model.logits(prompt + theirs[:i])[-1]   # the step that chose token i
    top = np.sort(logits)[::-1]
    return (f"first difference at generated token {i}: edgegen {ours[i]}, reference {theirs[i]}; "
            f"edgegen's logits there: top {top[0]:.4f}, second {top[1]:.4f} (gap {top[0] - top[1]:.2e}), "
            f"reference's token {logits[theirs[i]]:.4f}")


def make_runs(model, goldens):
    """``model``'s (prompt ids, greedy tokens) per case, computed once: runs(name)."""
    done: dict[str, tuple[list[int], list[int]]] = {}

    def get(name: str) -> tuple[list[int], list[int]]:
        if name not in done:
            case = get_case(goldens, name)
            prompt = edgegen_prompt_ids(model, case)
            done[name] = prompt, edgegen_greedy(model, prompt, len(case["tokens"]))
        return done[name]
    return get


@pytest.fixture(scope="module")
def runs(smollm2, goldens):
    """The default kernels' runs."""
    return make_runs(smollm2, goldens)


@pytest.fixture(scope="module")
def ggml_runs(smollm2_ggml, goldens):
    """The ggml kernels' runs."""
    return make_runs(smollm2_ggml, goldens)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_ggml_kernels_give_the_goldens(smollm2_ggml, goldens, ggml_runs, name):
    case = get_case(goldens, name)
    prompt, ours = ggml_runs(name)
    assert prompt == case["prompt_ids"]
    assert ours == case["tokens"], explain(smollm2_ggml, prompt, ours, case["tokens"])


@pytest.fixture(scope="module")
def live_ggml_runs(smollm2_live_ggml, smollm2_ggml, ggml_runs, goldens):
    """The runs of the ggml kernels that follow the installed llama.cpp build."""
    return ggml_runs if smollm2_live_ggml is smollm2_ggml else make_runs(smollm2_live_ggml, goldens)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_ggml_kernels_equal_live_llama_cpp(goldens, live_ggml_runs, reference, llama, name):
    """Against the installed build, on the ggml kernels that follow it (AVX2 or AVX-512)."""
    case = get_case(goldens, name)
    prompt, ours = live_ggml_runs(name)
    assert reference.case_ids(llama, case) == prompt
    assert reference.greedy(llama, prompt, len(case["tokens"])) == ours


def test_goldens_are_for_this_file(goldens):
    model = MODELS[goldens["model"]["name"]]
    assert goldens["model"]["sha256"] == model.sha256 and goldens["model"]["size"] == model.size
    assert [c["name"] for c in goldens["cases"]] == CASE_NAMES
    assert all(len(c["tokens"]) == goldens["settings"]["max_tokens"] == 64 for c in goldens["cases"])


def test_chat_template_renders_as_llama_cpp_python(smollm2, goldens):
    case = get_case(goldens, "chat-poem")
    tok = smollm2.tokenizer
    text = render_chat(chat_template_for(smollm2.metadata), case["messages"], bos_token=tok.token_text(tok.bos_id),
                       eos_token=tok.token_text(tok.eos_id))
    assert text == case["rendered_prompt"]


@DIVERGES
@pytest.mark.parametrize("name", CASE_NAMES)
def test_default_kernels_give_the_goldens(smollm2, goldens, runs, name):
    case = get_case(goldens, name)
    prompt, ours = runs(name)
    assert prompt == case["prompt_ids"]
    assert ours == case["tokens"], explain(smollm2, prompt, ours, case["tokens"])


@DIVERGES
@pytest.mark.parametrize("name", CASE_NAMES)
def test_default_kernels_equal_live_llama_cpp(smollm2, goldens, runs, reference, llama, name):
    case = get_case(goldens, name)
    prompt, ours = runs(name)
    assert reference.case_ids(llama, case) == prompt
    theirs = reference.greedy(llama, prompt, len(case["tokens"]))
    assert ours == theirs, explain(smollm2, prompt, ours, theirs)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden_tokens_are_default_kernels_argmax_or_a_near_tie(smollm2, goldens, name):
    """Teacher-forced on llama.cpp's sequence: at every step its token is edgegen's first choice or
    within NEAR_TIE of the logit range below it."""
    case = get_case(goldens, name)
    prompt, gold = case["prompt_ids"], case["tokens"]
    logits = smollm2.logits(prompt + gold[:-1])[len(prompt) - 1:]
    span = logits.max(axis=1) - logits.min(axis=1)
    gap = (logits.max(axis=1) - logits[np.arange(len(gold)), gold]) / span
    assert (gap <= NEAR_TIE).all(), f"steps {np.flatnonzero(gap > NEAR_TIE).tolist()}: gaps {gap[gap > NEAR_TIE]}"
