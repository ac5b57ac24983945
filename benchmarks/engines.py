"""Two engines behind one tiny interface, timed by one shared loop.

    runner = EdgegenRunner(path, threads=2, n_ctx=256)   # or LlamaCppRunner(...)
    result = run_once(runner, prompt_ids, n_decode=64)

Each runner has ``reset()`` (empty KV cache), ``eval(ids) -> (vocab,) logits of the last token``
and ``name``. ``run_once`` times prefill (one ``eval`` of the whole prompt: the pp figure) and
greedy decode (``n_decode`` single-token ``eval`` calls: the tg figure) with the same code for
both engines. Greedy is ``np.argmax`` on the returned logits in both: no sampler runs.

What the timings include: the Python call into the engine, its forward pass and, for
llama.cpp, copying nothing (its logits are read in place); for edgegen, the logits array it
allocates. Excluded: model load, KV cache allocation, the first (warm-up) run. For llama.cpp
the engine's own counters (``llama_perf_context``) are read too, so the report can state how
much of the wall time is Python overhead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MS = 1e3


@dataclass(frozen=True)
class RunResult:
    prefill_s: float
    decode_s: float
    prefill_logits: np.ndarray        # (vocab,) float32, last prompt token
    tokens: tuple[int, ...]           # greedy decode
    engine_prefill_s: float | None    # the engine's own timer, where it has one
    engine_decode_s: float | None


class EdgegenRunner:
    name = "edgegen"

    def __init__(self, path: Path, threads: int, n_ctx: int, kernels: str = "cpp"):
        import edgegen
        self.model = edgegen.load(path, threads=threads, kernels=kernels, n_ctx=n_ctx)
        self.vocab = self.model.config.vocab_size
        self.session = self.model.new_session()

    def reset(self) -> None:
        self.session = self.model.new_session()      # a fresh KV cache, allocated outside the timing

    def eval(self, ids) -> np.ndarray:
        return self.session.eval(ids)

    def perf(self) -> tuple[float | None, float | None]:
        return None, None

    def close(self) -> None:
        pass


class LlamaCppRunner:
    """llama-cpp-python's low-level path: ``Llama.eval`` (llama_decode on a batch whose last token
    outputs logits) and ``llama_get_logits_ith(ctx, -1)``; ``Llama.scores`` is only filled
    with ``logits_all=True``, which would compute logits for every prompt token."""
    name = "llama.cpp"

    def __init__(self, path: Path, threads: int, n_ctx: int, n_batch: int):
        import llama_cpp
        self._lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                                   n_batch=n_batch, n_ubatch=n_batch, verbose=False)
        self.vocab = self.llm.n_vocab()

    def reset(self) -> None:
        self.llm.reset()             # the next eval also removes the cached positions
        self._lib.llama_perf_context_reset(self.llm.ctx)

    def eval(self, ids) -> np.ndarray:
        self.llm.eval(ids)
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.vocab,))

    def perf(self) -> tuple[float | None, float | None]:
        data = self._lib.llama_perf_context(self.llm.ctx)
        return data.t_p_eval_ms / MS, data.t_eval_ms / MS

    def close(self) -> None:
        self.llm.close()


def run_once(runner, prompt: list[int], n_decode: int) -> RunResult:
    """Prefill ``prompt`` then decode ``n_decode`` greedy tokens from an empty cache."""
    runner.reset()
    t0 = time.perf_counter()
    logits = runner.eval(prompt)
    t1 = time.perf_counter()
    prefill_logits = np.array(logits, dtype=np.float32)       # copied outside the timed region
    tokens = []
    t2 = time.perf_counter()
    for _ in range(n_decode):
        tok = int(np.argmax(logits))
        tokens.append(tok)
        logits = runner.eval([tok])
    t3 = time.perf_counter()
    engine_prefill, engine_decode = runner.perf()
    return RunResult(t1 - t0, t3 - t2, prefill_logits, tuple(tokens), engine_prefill, engine_decode)


def random_prompt(vocab: int, n: int, seed: int) -> list[int]:
    """``n`` token ids drawn uniformly from the vocabulary with a fixed seed."""
    return np.random.default_rng(seed).integers(0, vocab, size=n).tolist()
