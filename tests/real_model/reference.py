"""llama.cpp (llama-cpp-python) as the reference for SmolLM2-135M-Instruct.

Shared by the tests in this folder and tools/record_smollm2_goldens.py, so that the goldens and
the live re-check are made the same way. Import it only after llama_cpp is known to be installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from edgegen.backends.llamacpp import open_llama as _open

N_CTX = 512
N_THREADS = 1
GGML_TYPE_F32 = 0    # llama.cpp's KV cache in F32, as edgegen's (its default F16 would round K and V)
TEACHER_FORCED = 256   # positions of tests/data/corpus.txt that test_teacher_forced.py scores
SETTINGS = {
    "n_ctx": N_CTX, "n_threads": N_THREADS, "kv_cache": "f32", "flash_attn": False, "logits_all": True,
    "greedy": "argmax of the last position's logits (numpy, ties to the lowest id), fed back one token at a time",
    "eos": "ignored: decoding continues past <|im_end|> so every case has exactly max_tokens tokens",
}


def build_info() -> str:
    """What the installed llama.cpp was compiled for ("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ...")."""
    return llama_cpp.llama_print_system_info().decode().strip()


def ggml_kernels_for(info: str) -> str | None:
    """The edgegen kernels that compute as this llama.cpp build (kernels/ggml_x86.py): ``ggml``
    for an x86 build with AVX2 and FMA (8-lane float vectors), ``ggml-avx512`` for one with
    AVX-512 as well (16 lanes, its own expf); None for others (NEON, ...), which sum in other
    orders."""
    flags = {f.strip() for f in info.replace("CPU :", "").split("|")}
    if not {"AVX2 = 1", "FMA = 1"} <= flags:
        return None
    return "ggml-avx512" if "AVX512 = 1" in flags else "ggml"


def open_llama(path: str | Path, **kw: Any) -> llama_cpp.Llama:
    return _open(path, n_ctx=N_CTX, n_threads=N_THREADS, n_threads_batch=N_THREADS,
                           type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False, verbose=False, **kw)


def open_vocab(path: str | Path) -> llama_cpp.Llama:
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


def render_chat(llm: llama_cpp.Llama, messages: list[Mapping[str, str]]) -> str:
    """The prompt text of ``messages`` through the file's template, rendered by llama-cpp-python's
    own Jinja formatter (independent of edgegen/chat.py)."""
    special = lambda tid: llm.detokenize([tid], special=True).decode()   # noqa: E731
    fmt = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                              eos_token=special(llm.token_eos()), bos_token=special(llm.token_bos()))
    return fmt(messages=messages).prompt


def case_text(llm: llama_cpp.Llama, case: Mapping[str, Any]) -> str:
    """A golden case's prompt text: the raw prompt, or its messages through the chat template."""
    return render_chat(llm, case["messages"]) if case["chat_template"] else case["prompt"]


def case_ids(llm: llama_cpp.Llama, case: Mapping[str, Any]) -> list[int]:
    return llm.tokenize(case_text(llm, case).encode(), add_bos=case["add_bos"], special=case["parse_special"])


def greedy(llm: llama_cpp.Llama, ids: list[int], n: int) -> list[int]:
    """``n`` greedy tokens after ``ids``, reading llm.scores (filled only when logits_all=True)."""
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    return out


def all_logits(llm: llama_cpp.Llama, ids: list[int]) -> np.ndarray:
    """(len(ids), vocab) float32 logits of a full forward from an empty context."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)   # a copy: the next eval writes llm.scores
