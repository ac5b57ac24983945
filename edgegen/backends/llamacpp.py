"""llama.cpp as a peer backend: logits from llama.cpp (llama-cpp-python), everything else edgegen's.

``edgegen.load("m.gguf", backend="llama.cpp")`` validates the file with edgegen's GGUF reader
first (a truncated or malformed file gets edgegen's error, not a crash inside llama.cpp), then
hands it to llama.cpp. Tokenization, the sampler chain, structured output, chat templates and
stop strings are edgegen's (backends/base.py), so the same prompt and seed give results that
differ only where llama.cpp's logits differ from the native engine's.

Sessions: the model is loaded once; each session is a llama.cpp context of its own (its own KV
cache) on that model. This uses llama-cpp-python's ``_internals`` (LlamaContext, LlamaBatch),
checked with the version pinned in the ``llamacpp`` extra.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edgegen.backends.base import DEFAULT_MAX_CONTEXT, ModelBase, check_room, check_truncate, resolve_n_ctx, resolve_threads
from edgegen.errors import MissingDependencyError, ModelFileError, UsageError
from edgegen.gguf_file import GGUFFile
from edgegen.tokenizer import Tokenizer

INSTALL = "pip install 'edgegen[llamacpp]'"
N_BATCH = 512
GGML_TYPE_F32 = 0
FLASH_ATTN_OFF = 0


_ready = threading.Lock()
_initialised = False


def _llama_cpp():
    """llama_cpp, its logging silenced and its backend initialised once per process."""
    global _initialised
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError as e:
        raise MissingDependencyError(f"the llama.cpp backend needs llama-cpp-python ({e}); install it with: {INSTALL}") from None
    with _ready:
        if not _initialised:
            set_verbose(False)
            llama_cpp.llama_backend_init()
            _initialised = True
    return llama_cpp


# llama.cpp's "extra buffer types" re-lay weights for AMX tiles (where the CPU reports AMX) and for
# its interleaved repacked kernels. Some virtual machines report AMX, and the kernel grants the tile
# permission, yet do not keep the tile state: llama.cpp then dies of SIGILL (tilezero) in its first
# matmul. On a CPU that reports AMX they are off unless EDGEGEN_LLAMACPP_EXTRA_BUFTS=1 (a machine
# known to run AMX); elsewhere llama.cpp's default (on) stands. Off, llama.cpp uses its plain
# vec_dot kernels for every type, as on any CPU without those layouts.
EXTRA_BUFTS_ENV = "EDGEGEN_LLAMACPP_EXTRA_BUFTS"


def _cpu_reports_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and "amx_tile" in line.partition(":")[2].split() for line in f)
    except OSError:
        return False


def extra_bufts() -> bool:
    """Whether llama.cpp may use its extra buffer types (AMX, repacked weights) on this machine."""
    forced = os.environ.get(EXTRA_BUFTS_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise UsageError(f"{EXTRA_BUFTS_ENV}={forced!r}: use 1 (on) or 0 (off)")
        return forced == "1"
    return not _cpu_reports_amx()


def model_params(lib):
    """llama.cpp's default model parameters, with the extra buffer types as extra_bufts() says."""
    params = lib.llama_model_default_params()
    params.use_extra_bufts = extra_bufts()
    return params


_patch = threading.Lock()


@contextlib.contextmanager
def _llama_model_params() -> Iterator[None]:
    """llama_cpp.Llama builds its model parameters from llama_model_default_params() inside its
    constructor; for that call, hand it model_params()."""
    lib = _llama_cpp()
    import llama_cpp.llama_cpp as low
    with _patch:
        original = low.llama_model_default_params
        low.llama_model_default_params = lambda: model_params(lib)
        try:
            yield
        finally:
            low.llama_model_default_params = original


def open_llama(path: str | os.PathLike, **kw: Any):
    """``llama_cpp.Llama(path, **kw)`` with model_params(): how edgegen's benchmarks and tests open
    llama.cpp's high-level object, so that it runs on every machine they run on."""
    lib = _llama_cpp()
    with _llama_model_params():
        return lib.Llama(str(path), **kw)


class LlamaCppSession:
    """One llama.cpp context (KV cache) on the shared model. Not shared between threads."""

    def __init__(self, model: "LlamaCppModel", logits_all: bool = False):
        lib = model.lib
        from llama_cpp import _internals
        params = lib.llama_context_default_params()
        params.n_ctx = model.n_ctx
        params.n_batch = params.n_ubatch = min(N_BATCH, model.n_ctx)
        params.n_threads = params.n_threads_batch = model.threads
        params.type_k = params.type_v = GGML_TYPE_F32   # float32 KV cache, as the native engine's
        params.flash_attn_type = FLASH_ATTN_OFF          # as llama-cpp-python's Llama (the C default is "auto")
        self._lib = lib
        self._model = model
        self._ctx = _internals.LlamaContext(model=model.llama_model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=params.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._n_batch = params.n_batch
        self._logits_all = logits_all
        self.n_ctx = model.n_ctx
        self.tokens: list[int] = []

    def truncate(self, n: int) -> None:
        check_truncate(n, len(self.tokens))
        self._ctx.kv_cache_seq_rm(-1, n, -1)
        del self.tokens[n:]

    def eval(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        ids = self._model.check_ids(tokens).tolist()
        check_room(len(ids), len(self.tokens), self.n_ctx)
        if all_logits and not self._logits_all:
            raise UsageError("all_logits needs a session made with logits_all=True")
        vocab = self._model.tokenizer.vocab_size
        rows = []
        for i in range(0, len(ids), self._n_batch):
            batch = ids[i:i + self._n_batch]
            self._batch.set_batch(batch=batch, n_past=len(self.tokens), logits_all=all_logits)
            self._ctx.decode(self._batch)
            self.tokens.extend(batch)
            if all_logits:
                ptr = self._lib.llama_get_logits(self._ctx.ctx)
                rows.append(np.ctypeslib.as_array(ptr, shape=(len(batch) * vocab,)).reshape(len(batch), vocab).copy())
        if all_logits:
            return np.concatenate(rows)
        ptr = self._lib.llama_get_logits_ith(self._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(vocab,)).copy()


class LlamaCppModel(ModelBase):
    backend = "llama.cpp"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, n_ctx: int | None = None):
        self.lib = _llama_cpp()
        file = GGUFFile.open(path)                       # edgegen's checks before llama.cpp sees the file
        self.path: Path = file.path
        self.metadata = file.metadata
        self.tokenizer = Tokenizer.from_metadata(file.metadata, source=file.path.name)
        arch = file.metadata.get("general.architecture")
        train_ctx = file.metadata.get(f"{arch}.context_length") if isinstance(arch, str) else None
        limit = int(train_ctx) if isinstance(train_ctx, int) and train_ctx > 0 else DEFAULT_MAX_CONTEXT
        self.n_ctx = resolve_n_ctx(n_ctx, limit)
        self.threads = resolve_threads(threads)
        del file
        from llama_cpp import _internals
        params = model_params(self.lib)
        try:
            self.llama_model = _internals.LlamaModel(path_model=str(self.path), params=params, verbose=False)
        except ValueError as e:   # llama.cpp refused the file (an architecture it does not know, ...)
            raise ModelFileError(f"{self.path.name}: llama.cpp cannot load it ({e})") from None
        if self.llama_model.n_vocab() != self.tokenizer.vocab_size:
            raise ModelFileError(f"{self.path.name}: llama.cpp sees {self.llama_model.n_vocab()} tokens, the file's "
                                 f"tokenizer {self.tokenizer.vocab_size}")

    def new_session(self, logits_all: bool = False) -> LlamaCppSession:
        return LlamaCppSession(self, logits_all)

    def _logits_session(self) -> LlamaCppSession:
        return self.new_session(logits_all=True)
