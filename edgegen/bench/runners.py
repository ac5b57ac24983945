"""One eval seam per text backend, and what a report says about the model it runs.

    runner = open_runner("native", "m.gguf", threads=2, n_ctx=640)
    runner.reset()                    # a fresh KV cache, allocated outside any timing
    logits = runner.eval(ids)         # (vocab,) logits of the last token

native and onnxruntime run through ``edgegen.load(path, backend=...)`` and a session's
``eval``. llama.cpp is the peer measured through llama-cpp-python directly (``Llama.eval`` and
``llama_get_logits_ith``), as llama-bench would run it: no edgegen code between the call and
the logits. Greedy decoding is ``np.argmax`` on the returned logits for every backend.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.bench.traffic import KV_TENSORS, DecodeTraffic, decode_traffic
from edgegen.backends.llamacpp import open_llama
from edgegen.errors import MissingDependencyError, ModelFileError

TEXT_BACKENDS = ("native", "onnxruntime", "llama.cpp")
LLAMA_N_BATCH = 512       # llama.cpp's batch and micro-batch: a 512-token prompt in one llama_decode
MS = 1e3
LLAMACPP_INSTALL = "pip install 'edgegen[llamacpp]'"


@dataclass(frozen=True)
class ModelInfo:
    model_filename: str
    model_type: str           # llama-bench's: architecture, size, weight type ("llama 135M Q4_0")
    model_size: int           # bytes on disk
    n_params: int
    traffic: DecodeTraffic    # bytes one decode step reads


def params_label(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def gguf_info(path: Path, backend: str) -> ModelInfo:
    from edgegen.gguf_file import GGUFFile
    f = GGUFFile.open(path)
    n_params = sum(t.rows * t.cols for t in f.tensors.values())
    by_type = Counter()
    for t in f.tensors.values():
        by_type[t.qtype.name] += t.nbytes
    arch = f.metadata.get("general.architecture", "?")
    kind = f"{arch} {params_label(n_params)} {by_type.most_common(1)[0][0] if by_type else '?'}"
    return ModelInfo(Path(path).name, kind, f.file_size, n_params, decode_traffic(path, backend))


def _onnx_params(model_file: Path) -> int:
    """Values in the graph's initializers (the onnx package reads the graph, not the weight data)."""
    try:
        import onnx
    except ImportError:
        return 0
    graph = onnx.load(str(model_file), load_external_data=False).graph
    return int(sum(np.prod(init.dims, dtype=np.int64) for init in graph.initializer if len(init.dims) > 1))


def onnx_info(model) -> ModelInfo:
    """An onnxruntime OnnxModel: weights = the model files (all read per step but the embedding's
    unused rows: an upper bound), KV = its past inputs' (kv_heads x head_dim) per layer."""
    folder, manifest = Path(model.path), model.manifest
    model_file = folder / manifest["model_file"]
    weight_files = [p for p in folder.iterdir() if p.is_file() and p.name.startswith(manifest["model_file"])]
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    _, kv_heads, _, head_dim = model._past_shape
    kv_elems = len(model.past_names) // KV_TENSORS * KV_TENSORS * kv_heads * head_dim
    traffic = DecodeTraffic(sum(p.stat().st_size for p in weight_files), kv_elems, size,
                            np.dtype(model._past_dtype).itemsize)
    n_params = _onnx_params(model_file)
    quant = (manifest.get("quantization") or {}).get("type", "?")
    return ModelInfo(folder.name, f"{manifest.get('architecture', '?')} {params_label(n_params)} {quant}", size,
                     n_params, traffic)


class EdgegenRunner:
    """native or onnxruntime through ``edgegen.load``."""

    def __init__(self, backend: str, path: Path, threads: int, n_ctx: int):
        import edgegen
        self.model = edgegen.load(path, backend=backend, threads=threads, n_ctx=n_ctx)
        self.vocab = self.model.vocab_size
        self.info = gguf_info(path, backend) if backend == "native" else onnx_info(self.model)
        self.session = None
        self._engine_s: list[float] = []    # time inside the native C++ forward, per eval call

    def reset(self) -> None:
        self.session = self.model.new_session()
        self._engine_s = []

    def eval(self, ids) -> np.ndarray:
        logits = self.session.eval(ids)
        inside = getattr(self.session, "last_forward_seconds", None)
        if inside is not None:
            self._engine_s.append(inside)
        return logits

    def perf(self) -> tuple[float | None, float | None]:
        """Seconds inside the native C++ forward since ``reset``: the first call, and the others together."""
        if not self._engine_s:
            return None, None
        return self._engine_s[0], sum(self._engine_s[1:])

    def close(self) -> None:
        self.session = None


class LlamaCppRunner:
    """llama-cpp-python's low-level path: ``Llama.eval`` (llama_decode on batches whose last token
    outputs logits) and ``llama_get_logits_ith(ctx, -1)``, read in place."""

    def __init__(self, path: Path, threads: int, n_ctx: int, n_batch: int = LLAMA_N_BATCH):
        try:
            import llama_cpp
        except ImportError as e:
            raise MissingDependencyError(f"llama-cpp-python is not installed ({e}): {LLAMACPP_INSTALL}") from None
        if Path(path).is_dir():
            raise ModelFileError(f"{path}: a folder; llama.cpp reads GGUF files")
        self.info = gguf_info(path, "llama.cpp")      # edgegen's reader checks the file before llama.cpp sees it
        self._lib = llama_cpp
        self.llm = open_llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                                   n_batch=n_batch, n_ubatch=n_batch, verbose=False)
        self.vocab = self.llm.n_vocab()

    def reset(self) -> None:
        self.llm.reset()             # the next eval also removes the cached positions
        self._lib.llama_perf_context_reset(self.llm.ctx)

    def eval(self, ids) -> np.ndarray:
        self.llm.eval(ids)
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.vocab,))

    def perf(self) -> tuple[float, float]:
        """llama.cpp's own timers: seconds in prompt batches, and in single-token batches."""
        data = self._lib.llama_perf_context(self.llm.ctx)
        return data.t_p_eval_ms / MS, data.t_eval_ms / MS

    def close(self) -> None:
        self.llm.close()


def open_runner(backend: str, path: Path, threads: int, n_ctx: int):
    """A runner for ``backend`` (one of TEXT_BACKENDS) on the model at ``path``."""
    if backend == "llama.cpp":
        return LlamaCppRunner(path, threads, n_ctx)
    if backend in ("native", "onnxruntime"):
        return EdgegenRunner(backend, path, threads, n_ctx)
    raise ValueError(f"backend must be one of {', '.join(TEXT_BACKENDS)}, found {backend!r}")


def random_prompt(vocab: int, n: int, seed: int) -> list[int]:
    """``n`` token ids drawn uniformly from the vocabulary with a fixed seed."""
    return np.random.default_rng(seed).integers(0, vocab, size=n).tolist()
