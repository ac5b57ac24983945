"""The native backend: GGUF weights memory-mapped, forward pass on edgegen's own kernels."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edgegen.backends.base import ModelBase, check_room, check_truncate, resolve_n_ctx, resolve_threads

from edgegen.gguf_file import GGUFFile
from edgegen.kernels import load_kernels
from edgegen.kv_cache import KVCache
from edgegen.models import llama
from edgegen.tokenizer import Tokenizer



class CacheSession:
    """A session's KV cache (``.cache``, with ``length`` and ``truncate``) and the ids it holds
    (``.tokens``): shared by the CPU and CUDA sessions."""
    cache: KVCache
    tokens: list[int]

    @property
    def n_past(self) -> int:
        return self.cache.length

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` cached positions (a shared prefix), forget the rest."""
        check_truncate(n, len(self.tokens))
        self.cache.truncate(n)
        del self.tokens[n:]


class NativeSession(CacheSession):
    """One conversation's state: its own KV cache. Not shared between threads."""

    def __init__(self, model: "NativeModel"):
        c = model.config
        self._model = model
        self.n_ctx = model.n_ctx
        self.cache = KVCache(c.n_layers, c.n_kv_heads, model.n_ctx, c.head_dim)
        self.tokens: list[int] = []   # the ids the cache holds, in order
        self.last_forward_seconds: float | None = None  # time inside the last C++ forward call

    def eval(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        ids = self._model.check_ids(tokens).astype(np.int32)
        check_room(len(ids), self.n_past, self.n_ctx)
        m = self._model
        if m.compiled is not None:
            logits, self.last_forward_seconds = m.compiled(self.cache, ids, self.n_past, m.threads, all_logits)
        else:
            logits = llama.forward(m.config, m.weights, m.kernels, self.cache, ids, self.n_past, m.threads, all_logits)
        self.tokens.extend(int(i) for i in ids)
        return logits if all_logits else logits[0]


class GGUFModel(ModelBase):
    """A Llama-family GGUF file opened and checked: its config, weights and tokenizer. The CPU
    (NativeModel) and CUDA (backends/cuda.py) models run their forward passes over it."""

    def _open(self, path: str | os.PathLike) -> None:
        self.file = GGUFFile.open(path)
        self.config = llama.LlamaConfig.from_gguf(self.file)
        self.weights = llama.Weights.from_gguf(self.file, self.config)
        self.tokenizer = Tokenizer.from_metadata(self.file.metadata, source=self.file.path.name)

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def metadata(self) -> dict:
        return self.file.metadata

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size


class NativeModel(GGUFModel):
    backend = "native"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, kernels: str = "cpp",
                 n_ctx: int | None = None, compiled: bool = True):
        self._open(path)
        self.kernels = load_kernels(kernels)
        if self.kernels.name.startswith("ggml"):      # llama.cpp's arithmetic: Q4_1 / Q8_0 matmuls only
            from edgegen.kernels.ggml_x86 import check_weights
            check_weights([self.weights.output] + [m for layer in self.weights.layers for m in layer.matrices])
        # C++ kernels run the whole forward in one call; `compiled=False` keeps the Python loop
        self.compiled = llama.CompiledForward(self.config, self.weights, self.kernels) if (
            compiled and self.kernels.compiled is not None) else None
        self.threads = resolve_threads(threads)
        self.n_ctx = resolve_n_ctx(n_ctx, self.config.context_length)

    def new_session(self) -> NativeSession:
        return NativeSession(self)

