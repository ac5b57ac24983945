"""device="cuda": the native backend's file loading and tokenizer, the forward pass on a CUDA GPU
(numba.cuda; ``edgegen.models.llama_cuda``). Without a GPU or numba.cuda, loading raises
``CudaUnavailableError`` saying what is missing; under NUMBA_ENABLE_CUDASIM=1 it runs (slowly)
on numba's CPU simulator."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from edgegen.backends.base import check_room, resolve_n_ctx
from edgegen.backends.native import CacheSession, GGUFModel


class CudaSession(CacheSession):
    """One conversation: its own KV cache on the device."""

    def __init__(self, model: "CudaModel"):
        self._model = model
        self.n_ctx = model.n_ctx
        self.cache = model.engine.new_cache()
        self.tokens: list[int] = []

    def eval(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Logits of the last token (vocab,), or of every token (T, vocab): copied back from the device."""
        ids = self._model.check_ids(tokens)
        check_room(len(ids), self.n_past, self.n_ctx)
        if not all_logits:
            self._feed(ids)
            return self._model.engine.logits()
        rows = []
        for t in ids:
            self._feed([t])
            rows.append(self._model.engine.logits())
        return np.stack(rows)

    def eval_greedy(self, tokens: Sequence[int]) -> int:
        """Run ``tokens``; return the argmax of the last logits (only the id leaves the device)."""
        ids = self._model.check_ids(tokens)
        check_room(len(ids), self.n_past, self.n_ctx)
        self._feed(ids)
        return self._model.engine.greedy()

    def _feed(self, ids) -> None:
        """Run each token through the device forward pass, appending it to the cache."""
        for t in ids:
            self._model.engine.step(self.cache, int(t), self.n_past)
            self.tokens.append(int(t))


class CudaModel(GGUFModel):
    backend = "native"
    device = "cuda"

    def __init__(self, path: str | os.PathLike, n_ctx: int | None = None, threads: int | None = None,
                 kernels: str = "cpp", launch=None):
        """``threads`` and ``kernels`` choose CPU kernels and are ignored here (accepted so the CLI's
        options pass through). ``launch``: ``llama_cuda.CudaLaunch`` (default: GPU shapes)."""
        from edgegen.models.llama_cuda import CudaLaunch, CudaLlama
        self._open(path)
        self.n_ctx = resolve_n_ctx(n_ctx, self.config.context_length)
        self.engine = CudaLlama(self.config, self.weights, self.n_ctx, launch or CudaLaunch())

    def new_session(self) -> CudaSession:
        return CudaSession(self)
