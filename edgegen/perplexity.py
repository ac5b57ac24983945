"""Perplexity of a text under a model, by llama.cpp's ``llama-perplexity`` method.

    ids = model.tokenizer.encode(text)          # with BOS where the model's tokenizer adds one
    result = perplexity(model, ids, ctx=512)
    print(result.summary())                     # PPL = 12.3456 +/- 0.4321 ...

Method (tools/perplexity/perplexity.cpp, ``perplexity()``):
1. split the token ids into ``len(ids) // ctx`` non-overlapping windows of ``ctx`` tokens (the
   tail that does not fill a window is dropped);
2. where the tokenizer adds BOS, the first token of every window is replaced by BOS, so each
   window starts as a document does;
3. run each window from an empty context and score only its second half: the logits at positions
   ``first = ctx // 2`` .. ``ctx - 2`` predict tokens ``first + 1`` .. ``ctx - 1`` (every scored
   token sees at least ``ctx // 2`` tokens of context), ``ctx - 1 - first`` tokens a window;
4. PPL = exp(mean NLL) over all scored tokens; its error is llama.cpp's
   ``ppl * sqrt((mean(NLL^2) - mean(NLL)^2) / (n - 1))`` (the delta method).

Works with every backend: it only needs ``model.logits(ids)`` (all positions, from an empty
context) and ``model.tokenizer``. Log-softmax runs in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from edgegen.errors import UsageError

__all__ = ["PerplexityResult", "windows", "window_nll", "nll_per_window", "summarize", "perplexity"]


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    stderr: float              # standard error of ppl
    mean_nll: float            # nats per scored token
    n_scored: int              # tokens scored, all windows
    n_windows: int
    ctx: int
    window_ppls: tuple[float, ...]   # ppl of each window alone

    def summary(self) -> str:
        return (f"PPL = {self.ppl:.4f} +/- {self.stderr:.4f} ({self.n_windows} windows of {self.ctx} tokens, "
                f"{self.n_scored} tokens scored, mean NLL {self.mean_nll:.5f})")


def windows(ids: Sequence[int], ctx: int, bos_id: int | None) -> list[np.ndarray]:
    """Non-overlapping ``ctx``-token windows of ``ids``, each starting with ``bos_id`` when given."""
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 4:
        raise UsageError(f"ctx: expected an integer >= 4, found {ctx!r}")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) < ctx:
        raise UsageError(f"perplexity needs at least ctx = {ctx} tokens, found {len(ids)}; use a longer text "
                         "or a smaller --ctx")
    out = []
    for start in range(0, len(ids) - ctx + 1, ctx):
        window = ids[start:start + ctx].copy()
        if bos_id is not None:
            window[0] = bos_id
        out.append(window)
    return out


def window_nll(logits: np.ndarray, window: np.ndarray) -> np.ndarray:
    """NLL (nats, float64) of tokens ``ctx//2 + 1 .. ctx-1`` of ``window`` from its (ctx, vocab) logits."""
    ctx = len(window)
    first = ctx // 2
    rows = np.asarray(logits[first:ctx - 1], dtype=np.float64)
    if rows.shape[0] != ctx - 1 - first:
        raise UsageError(f"logits: expected {ctx} rows (one per window token), found {len(logits)}")
    top = rows.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
    targets = window[first + 1:ctx]
    return log_z - rows[np.arange(len(targets)), targets]


def nll_per_window(model, ids: Sequence[int], ctx: int) -> Iterator[np.ndarray]:
    """The scored NLLs of each window in turn (the caller draws progress or stops early)."""
    tok = model.tokenizer
    bos = tok.bos_id if tok.add_bos else None
    for window in windows(ids, ctx, bos):
        yield window_nll(model.logits(window.tolist()), window)


def summarize(nlls: Sequence[np.ndarray], ctx: int) -> PerplexityResult:
    """llama-perplexity's final estimate from the per-window NLLs."""
    if not nlls:
        raise UsageError("perplexity: no window was scored")
    every = np.concatenate(nlls)
    n = len(every)
    mean = float(every.mean())
    ppl = math.exp(mean)
    var = float((every ** 2).mean()) - mean * mean
    stderr = ppl * math.sqrt(var / (n - 1)) if var > 0 and n > 1 else 0.0
    return PerplexityResult(ppl=ppl, stderr=stderr, mean_nll=mean, n_scored=n, n_windows=len(nlls), ctx=ctx,
                            window_ppls=tuple(math.exp(float(w.mean())) for w in nlls))


def perplexity(model, ids: Sequence[int], ctx: int) -> PerplexityResult:
    """Perplexity of ``ids`` under ``model`` (any backend; load it with n_ctx >= ctx)."""
    if ctx > model.n_ctx:
        raise UsageError(f"ctx {ctx} exceeds the model's context of {model.n_ctx}; load it with n_ctx >= {ctx}")
    return summarize(list(nll_per_window(model, ids, ctx)), ctx)
