"""Two engines behind one tiny interface, timed by one shared loop (the runners and the greedy loop
are edgegen.bench's, which ``edgegen bench`` uses too; the agreement check is the scripts' own).

    runner = EdgegenRunner(path, threads=2, n_ctx=256)   # or LlamaCppRunner(...)
    result = run_once(runner, prompt_ids, n_decode=64)

Each runner has ``reset()`` (empty KV cache), ``eval(ids) -> (vocab,) logits of the last token``
and ``name``. ``run_once`` times prefill (one ``eval`` of the whole prompt: the pp figure) and
greedy decode (``n_decode`` single-token ``eval`` calls: the tg figure) with the same code for
both engines. Greedy is ``np.argmax`` on the returned logits in both: no sampler runs.

What the timings include: the Python call into the engine, its forward pass and, for
llama.cpp, copying nothing (its logits are read in place); for edgegen, the logits array it
allocates. Excluded: model load and KV cache allocation (callers also drop a warm-up run). Each
engine's own timer is read too (llama.cpp: ``llama_perf_context``; edgegen: the time inside its
one C++ forward call), so the report can state how much of the wall time is Python overhead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.backends.llamacpp import open_llama
from edgegen.bench import runners
from edgegen.bench.runners import LLAMA_N_BATCH, random_prompt
from edgegen.bench.text import greedy

__all__ = ["random_prompt", "LLAMA_N_BATCH"]    # the scripts' names for what edgegen.bench holds
DEFAULT_PROMPT = 128      # tokens prefilled in one call (pp); llama-bench's default is 512
DEFAULT_DECODE = 64       # tokens decoded one at a time (tg)
PROMPT_SEED = 0
EDGEGEN, LLAMA_CPP = "edgegen", "llama.cpp"


@dataclass(frozen=True)
class RunResult:
    prefill_s: float
    decode_s: float
    prefill_logits: np.ndarray        # (vocab,) float32, last prompt token
    tokens: tuple[int, ...]           # greedy decode
    engine_prefill_s: float | None    # the engine's own timer, where it has one
    engine_decode_s: float | None


class EdgegenRunner(runners.EdgegenRunner):
    """edgegen's native backend (edgegen.bench.runners), named as the scripts name it."""
    name = EDGEGEN

    def __init__(self, path: Path, threads: int, n_ctx: int):
        super().__init__("native", path, threads, n_ctx)


class LlamaCppRunner(runners.LlamaCppRunner):
    """llama.cpp through llama-cpp-python directly (edgegen.bench.runners)."""
    name = LLAMA_CPP


def greedy_decode(runner, logits: np.ndarray, n_decode: int) -> tuple[int, ...]:
    """``n_decode`` greedy tokens, the first from ``logits`` (those of the last prompt token)."""
    return tuple(greedy(runner, logits, n_decode))


def run_once(runner, prompt: list[int], n_decode: int) -> RunResult:
    """Prefill ``prompt`` then decode ``n_decode`` greedy tokens from an empty cache."""
    runner.reset()
    t0 = time.perf_counter()
    logits = runner.eval(prompt)
    t1 = time.perf_counter()
    prefill_logits = np.array(logits, dtype=np.float32)       # copied outside the timed region
    t2 = time.perf_counter()
    tokens = greedy_decode(runner, logits, n_decode)
    t3 = time.perf_counter()
    engine_prefill, engine_decode = runner.perf()
    return RunResult(t1 - t0, t3 - t2, prefill_logits, tokens, engine_prefill, engine_decode)


@dataclass(frozen=True)
class TokenCheck:
    """Greedy tokens scored by llama.cpp's logits along the same path (teacher-forced).

    With random weights many logits are close, so two correct engines whose roundings differ
    (llama.cpp quantizes activations to 8 bits for quantized weights and keeps an F16 KV cache;
    edgegen uses float32 for both) can pick different tokens at a near tie, after which their
    greedy paths part. This measures how near: 0 / 0.0 means every token was llama.cpp's argmax."""
    worst_rank: int          # highest rank of a chosen token among llama.cpp's logits (0 = its argmax)
    worst_gap: float         # max over steps of (its best logit - its logit for our token) / max |logit|


def check_tokens(path: Path, prompt: list[int], tokens: tuple[int, ...], threads: int) -> TokenCheck:
    """Score ``tokens`` (greedy after ``prompt``) with llama.cpp's logits for prompt + tokens[:-1]."""
    n = len(prompt) + len(tokens) - 1
    llm = open_llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=n,
                          n_batch=max(n, LLAMA_N_BATCH), n_ubatch=max(n, LLAMA_N_BATCH), logits_all=True,
                          verbose=False)
    try:
        llm.eval(list(prompt) + list(tokens[:-1]))
        rows = np.asarray(llm.scores[len(prompt) - 1:n], dtype=np.float32)    # row i predicts tokens[i]
    finally:
        llm.close()
    chosen = rows[np.arange(len(tokens)), np.asarray(tokens)]
    ranks = (rows > chosen[:, None]).sum(axis=1)
    gaps = (rows.max(axis=1) - chosen) / np.abs(rows).max(axis=1)
    return TokenCheck(worst_rank=int(ranks.max()), worst_gap=float(gaps.max()))


def open_runner(engine: str, path: Path, threads: int, n_ctx: int):
    """A runner for ``engine`` (EDGEGEN or LLAMA_CPP) on the GGUF file at ``path``."""
    if engine == EDGEGEN:
        return EdgegenRunner(path, threads=threads, n_ctx=n_ctx)
    if engine == LLAMA_CPP:
        return LlamaCppRunner(path, threads=threads, n_ctx=n_ctx, n_batch=LLAMA_N_BATCH)
    raise ValueError(f"engine must be {EDGEGEN!r} or {LLAMA_CPP!r}, found {engine!r}")
