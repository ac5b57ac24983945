"""The onnxruntime backend: a folder written by ``edgegen convert --to onnx`` run on ORT's CPU EP.

    model = edgegen.load("qwen2-onnx-int4", backend="onnxruntime", threads=4)

The folder (``converters/onnx_export.py`` writes it):

    edgegen-onnx.json   manifest: format, version, architecture, quantization, file names
    model.onnx          optimum's decoder with KV cache (+ model.onnx_data past 2 GB)
    tokenizer.gguf      tokenizer.* metadata and chat template, no tensors

The KV cache stays in onnxruntime: each call binds the previous ``present.N.key/value`` outputs
(OrtValues) as the next ``past_key_values.N.key/value`` inputs through an IOBinding, so keys and
values are never copied out to NumPy between steps; only ``truncate`` copies (a slice).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgegen.backends.base import ModelBase, check_room, check_truncate, resolve_n_ctx, resolve_threads
from edgegen.errors import MissingDependencyError, ModelFileError, UsageError

FORMAT_NAME = "edgegen-onnx"
FORMAT_VERSION = 1
MANIFEST_FILE = "edgegen-onnx.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.gguf"
EXTERNAL_DATA_SUFFIX = "_data"   # model.onnx -> model.onnx_data
PREFILL_CHUNK = 256              # prompt tokens per run: the graph returns logits for every position
PAST, PRESENT = "past_key_values.{}.{}", "present.{}.{}"
_KV = ("key", "value")
_PAST_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("the onnxruntime backend needs onnxruntime: pip install 'edgegen[onnx]'") from None
    return onnxruntime


def read_manifest_header(folder: Path, format_name: str, version: int, what: str, source: str) -> dict[str, Any]:
    """``folder``'s ``edgegen-onnx.json`` as a dict whose format and version are checked; ``what``
    names the export kind and ``source`` the input of the convert command, for the messages."""
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: not a folder (expected an ONNX {what} with {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: file not found (not an edgegen ONNX {what} folder; make one with "
                             f"`edgegen convert {source} OUT --to onnx`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFileError(f"{path}: field 'format' should be '{format_name}', found {found!r}")
    if manifest.get("version") != version:
        raise ModelFileError(f"{path}: field 'version' should be {version}, found {manifest.get('version')!r}")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked ``edgegen-onnx.json`` of an export folder."""
    path = folder / MANIFEST_FILE
    manifest = read_manifest_header(folder, FORMAT_NAME, FORMAT_VERSION, "export", "HF_DIR")
    for key in ("model_file", "tokenizer_file"):
        if not isinstance(manifest.get(key), str) or not manifest[key] or Path(manifest[key]).name != manifest[key]:
            raise ModelFileError(f"{path}: field '{key}' should be a file name, found {manifest.get(key)!r}")
    length = manifest.get("context_length")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ModelFileError(f"{path}: field 'context_length' should be a positive integer, found {length!r}")
    return manifest


class OnnxSession:
    """One conversation's state: the KV cache as OrtValues. Not shared between threads."""

    def __init__(self, model: "OnnxModel"):
        self._model = model
        self.n_ctx = model.n_ctx
        self.tokens: list[int] = []   # the ids whose keys and values the cache holds, in order
        self._past: list[Any] = [model.empty_past() for _ in model.past_names]

    @property
    def n_past(self) -> int:
        return len(self.tokens)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` cached positions (a shared prefix), forget the rest (copies the kept part)."""
        check_truncate(n, len(self.tokens))
        if n < len(self.tokens):
            ort = self._model.ort
            self._past = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v.numpy()[:, :, :n]))
                          for v in self._past]
            del self.tokens[n:]

    def eval(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Run ``tokens`` after the cached ones: last logits (vocab,), or (len, vocab) with ``all_logits``."""
        ids = self._model.check_ids(tokens)
        if not ids.size:
            raise UsageError("eval: no tokens given")
        check_room(ids.size, self.n_past, self.n_ctx)
        chunks = [self._run(ids[i:i + PREFILL_CHUNK], all_logits) for i in range(0, ids.size, PREFILL_CHUNK)]
        return np.concatenate(chunks) if all_logits else chunks[-1][-1]

    def _run(self, ids: np.ndarray, all_logits: bool) -> np.ndarray:
        """One forward: ids (T,) -> logits (T, vocab) (only the last row is meaningful unless all_logits)."""
        m = self._model
        past, total = self.n_past, self.n_past + ids.size
        binding = m.session.io_binding()
        feeds = {"input_ids": ids[None, :],                                                   # (1, T)
                 "attention_mask": np.ones((1, total), np.int64),                            # (1, past + T)
                 "position_ids": np.arange(past, total, dtype=np.int64)[None, :]}            # (1, T)
        for name in m.input_names - set(m.past_names):
            binding.bind_cpu_input(name, feeds[name])
        for name, value in zip(m.past_names, self._past):
            binding.bind_ortvalue_input(name, value)                                          # (1, kv, past, hd)
        binding.bind_output("logits", "cpu")                                                  # (1, T, vocab)
        for name in m.present_names:
            binding.bind_output(name, "cpu")                                                  # (1, kv, past + T, hd)
        m.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self._past = list(outputs[1:])
        self.tokens.extend(int(i) for i in ids)
        logits = outputs[0].numpy()[0]
        return logits.astype(np.float32, copy=False) if all_logits else logits[-1:].astype(np.float32)


class OnnxModel(ModelBase):
    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, n_ctx: int | None = None):
        from edgegen.gguf_meta import read_metadata
        from edgegen.tokenizer import Tokenizer

        self.ort = _import_ort()
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        tok_path = self.path / self.manifest["tokenizer_file"]
        if not tok_path.is_file():
            raise ModelFileError(f"{tok_path}: file not found (the tokenizer named by {MANIFEST_FILE})")
        self._metadata = read_metadata(tok_path, tok_path.name)
        self.tokenizer = Tokenizer.from_metadata(self._metadata, source=tok_path.name)
        self.threads = resolve_threads(threads)   # for reports; onnxruntime picks its own default when None
        self.session = self._open_session(self.path / self.manifest["model_file"], threads)
        self._check_graph()
        self.n_ctx = resolve_n_ctx(n_ctx, self.manifest["context_length"])

    @property
    def metadata(self) -> dict:
        return self._metadata

    def _open_session(self, model_path: Path, threads: int | None):
        if not model_path.is_file():
            raise ModelFileError(f"{model_path}: file not found (the model named by {MANIFEST_FILE})")
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = threads or 0   # 0: onnxruntime's default (physical cores)
        state = self.ort.capi.onnxruntime_pybind11_state
        try:
            return self.ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except (state.Fail, state.InvalidProtobuf, state.InvalidGraph, state.NoSuchFile, state.InvalidArgument,
                state.NotImplemented, state.RuntimeException) as e:
            raise ModelFileError(f"{model_path}: onnxruntime cannot load it ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:300]})") from None

    def _check_graph(self) -> None:
        """The inputs and outputs of optimum's decoder-with-past export, KV pairs in layer order."""
        source = self.path / self.manifest["model_file"]
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        n_layers = sum(1 for name in inputs if name.startswith("past_key_values.")) // 2
        self.past_names = [PAST.format(layer, kv) for layer in range(n_layers) for kv in _KV]
        self.present_names = [PRESENT.format(layer, kv) for layer in range(n_layers) for kv in _KV]
        self.input_names = set(inputs)
        expected_in = {"input_ids", *self.past_names}
        known_in = expected_in | {"attention_mask", "position_ids"}
        if n_layers == 0 or not expected_in <= set(inputs) or not set(inputs) <= known_in:
            raise ModelFileError(f"{source}: graph inputs {sorted(inputs)} are not a decoder with KV cache "
                                 f"(expected input_ids, attention_mask, position_ids, {PAST.format('N', 'key')}...)")
        if outputs != ["logits", *self.present_names]:
            raise ModelFileError(f"{source}: graph outputs {outputs} should be logits, {PRESENT.format('N', 'key')}...")
        first = inputs[self.past_names[0]]
        if first.type not in _PAST_DTYPES or len(first.shape) != 4 or not all(
                isinstance(d, int) for d in (first.shape[1], first.shape[3])):
            raise ModelFileError(f"{source}: input {first.name} should be (batch, kv_heads, past, head_dim) float, "
                                 f"found {first.shape} {first.type}")
        self._past_shape = (1, first.shape[1], 0, first.shape[3])   # (1, kv_heads, 0, head_dim)
        self._past_dtype = _PAST_DTYPES[first.type]

    def empty_past(self):
        """An empty past for one key or value: (1, kv_heads, 0, head_dim)."""
        return self.ort.OrtValue.ortvalue_from_numpy(np.zeros(self._past_shape, self._past_dtype))

    def new_session(self) -> OnnxSession:
        return OnnxSession(self)
