"""edgegen: run generative models fast on the device in front of you, offline.

    import edgegen
    model = edgegen.load("model.gguf", threads=2)
    for tok in model.generate("Once upon a time", max_tokens=32):
        print(tok.text, end="", flush=True)

Importing edgegen loads no deep-learning framework (no torch, transformers or onnx).
"""
from __future__ import annotations

import importlib
import os

from edgegen.errors import (ChatTemplateError, ContextLengthError, ConversionError, EdgegenError, GrammarError,
                            MissingDependencyError, ModelFileError, TokenizerError, UnsupportedModelError, UsageError)

__version__ = "0.1.0"
__all__ = ["load", "EdgegenError", "ModelFileError", "UnsupportedModelError", "TokenizerError",
           "ContextLengthError", "ConversionError", "MissingDependencyError", "UsageError", "GrammarError",
           "ChatTemplateError"]


def load(path: str | os.PathLike, backend: str = "native", device: str = "cpu", **options):
    """Load a model for generation. ``backend``: "native" (edgegen's kernels).

    Native options: ``threads`` (default: all cores), ``kernels`` ("cpp", "numba" or "ref"),
    ``n_ctx`` (KV cache size; default the model's context, at most 4096).
    ``device``: "cpu" (default) or "cuda" (native backend: weights and KV cache on a CUDA GPU
    through numba.cuda; raises CudaUnavailableError, a MissingDependencyError, without one).
    """
    from edgegen.backends import BACKENDS
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device: expected 'cpu' or 'cuda', found {device!r}")
    if device == "cuda":
        if backend != "native":
            raise UsageError(f"device 'cuda' runs with the native backend only, found backend '{backend}'")
        from edgegen.backends.cuda import CudaModel
        return CudaModel(path, **options)
    if backend not in BACKENDS:
        raise UsageError(f"backend: expected one of {', '.join(BACKENDS)}, found '{backend}'")
    module_name, class_name = BACKENDS[backend]
    return getattr(importlib.import_module(module_name), class_name)(path, **options)
