"""Reading a Hugging Face checkpoint folder: config.json and (sharded) safetensors, memory-mapped.

safetensors is a simple format: an 8-byte little-endian header length, a JSON header naming
each tensor's dtype, shape and byte range, then the raw data. It is read here directly with
``np.memmap`` so every dtype (bf16 included, which NumPy lacks) is mapped without copying and
converted to float32 one tensor at a time; bf16 by shifting its 16 bits into a float32.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.constants import Arch
from edgegen.errors import ConversionError
from edgegen.jsonfile import read_json_object

from .tensor_names import ARCHITECTURES

__all__ = ["HFConfig", "SafetensorsCheckpoint", "TensorEntry", "read_json", "read_safetensors_header"]

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_HEADER_LEN_BYTES = 8
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_BF16_SHIFT = 16

# safetensors dtype -> (NumPy dtype of the stored bits, converter to float32)
_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8"),
}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or ConversionError naming the file."""
    return read_json_object(path, ConversionError)

def _field(cfg: dict[str, Any], path: Path, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = cfg.get(key, default)
    if value is ...:
        raise ConversionError(f"{path}: missing field {key!r}")
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConversionError(f"{path}: field {key!r} should be {expected}, found {value!r}")
    return value


def _positive(cfg: dict[str, Any], path: Path, key: str, default: Any = ...) -> int:
    value = _field(cfg, path, key, int, default)
    if value <= 0:
        raise ConversionError(f"{path}: field {key!r} should be a positive integer, found {value}")
    return value


@dataclass(frozen=True)
class HFConfig:
    """The hyper-parameters of a decoder-only HF checkpoint that a GGUF file records."""
    arch: Arch
    hf_architecture: str
    name: str
    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_size: int
    head_dim: int
    context_length: int
    rms_eps: float
    rope_theta: float
    tie_embeddings: bool

    @classmethod
    def from_hf_dir(cls, hf_dir: Path) -> "HFConfig":
        path = hf_dir / CONFIG_FILE
        cfg = read_json(path)
        archs = _field(cfg, path, "architectures", list)
        if len(archs) != 1 or archs[0] not in ARCHITECTURES:
            raise ConversionError(f"{path}: field 'architectures' is {archs!r}; supported: "
                                  f"{', '.join(sorted(ARCHITECTURES))}")
        if cfg.get("rope_scaling") is not None:
            raise ConversionError(f"{path}: field 'rope_scaling' is {cfg['rope_scaling']!r}; only models "
                                  "without RoPE scaling (null) are supported")
        hidden = _positive(cfg, path, "hidden_size")
        n_heads = _positive(cfg, path, "num_attention_heads")
        n_kv = _positive(cfg, path, "num_key_value_heads", n_heads)
        if n_heads % n_kv:
            raise ConversionError(f"{path}: num_attention_heads ({n_heads}) is not a multiple of "
                                  f"num_key_value_heads ({n_kv})")
        default_head_dim = hidden // n_heads
        head_dim = cfg.get("head_dim") or default_head_dim
        if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
            raise ConversionError(f"{path}: field 'head_dim' should be a positive even integer, found {head_dim!r}")
        return cls(
            arch=ARCHITECTURES[archs[0]],
            hf_architecture=archs[0],
            name=str(cfg.get("_name_or_path") or hf_dir.resolve().name),
            vocab_size=_positive(cfg, path, "vocab_size"),
            hidden_size=hidden,
            n_layers=_positive(cfg, path, "num_hidden_layers"),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            ffn_size=_positive(cfg, path, "intermediate_size"),
            head_dim=head_dim,
            context_length=_positive(cfg, path, "max_position_embeddings"),
            rms_eps=float(_field(cfg, path, "rms_norm_eps", (int, float))),
            rope_theta=float(_field(cfg, path, "rope_theta", (int, float), 10000.0)),
            tie_embeddings=_field(cfg, path, "tie_word_embeddings", bool, False),
        )


@dataclass(frozen=True)
class _TensorEntry:
    file: Path
    dtype: str
    shape: tuple[int, ...]
    begin: int          # absolute byte offset in the file
    nbytes: int


def _read_header(path: Path) -> dict[str, _TensorEntry]:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(_HEADER_LEN_BYTES).ljust(_HEADER_LEN_BYTES, b"\0"))
            if header_len > min(_MAX_HEADER_BYTES, size - _HEADER_LEN_BYTES):
                raise ConversionError(f"{path}: not a safetensors file (header length {header_len}, file size {size})")
            header = json.loads(f.read(header_len))
    except FileNotFoundError as e:
        raise ConversionError(f"{path}: file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: safetensors header is not valid JSON ({e})") from e
    data_start = _HEADER_LEN_BYTES + header_len
    entries: dict[str, _TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(n) for n in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise ConversionError(f"{path}: malformed header entry for tensor {name!r}: {info!r}") from e
        if dtype not in _DTYPES:
            raise ConversionError(f"{path}: tensor {name!r} has dtype {dtype}; supported: {', '.join(_DTYPES)}")
        expected = math.prod(shape) * _DTYPES[dtype].itemsize
        if end - begin != expected or data_start + end > size:
            raise ConversionError(f"{path}: tensor {name!r} byte range [{begin}, {end}) does not hold "
                                  f"{dtype}{list(shape)} inside a {size}-byte file")
        entries[name] = _TensorEntry(path, dtype, shape, data_start + begin, expected)
    return entries


TensorEntry = _TensorEntry


def read_safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """The checked header of one .safetensors file: tensor name -> (file, dtype, shape, absolute byte
    offset, byte count). ConversionError naming the file for a bad header or a truncated file."""
    return _read_header(Path(path))


class SafetensorsCheckpoint:
    """The tensors of ``model.safetensors`` or of the shards listed by ``model.safetensors.index.json``."""

    def __init__(self, hf_dir: Path):
        index = hf_dir / INDEX_FILE
        if index.exists():
            weight_map = _field(read_json(index), index, "weight_map", dict)
            files = sorted(set(weight_map.values()))
            for file in files:
                if not (hf_dir / file).exists():
                    raise ConversionError(f"{index}: lists shard {file!r}, which is missing from {hf_dir}")
        elif (hf_dir / SINGLE_FILE).exists():
            files = [SINGLE_FILE]
        else:
            others = sorted(p.name for p in hf_dir.glob("*.bin")) + sorted(p.name for p in hf_dir.glob("*.pt*"))
            hint = f" (found {', '.join(others)}: re-save the model with safe_serialization=True)" if others else ""
            raise ConversionError(f"{hf_dir}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")
        self._entries: dict[str, _TensorEntry] = {}
        for file in files:
            for name, entry in _read_header(hf_dir / file).items():
                if name in self._entries:
                    raise ConversionError(f"{hf_dir / file}: tensor {name!r} also appears in {self._entries[name].file}")
                self._entries[name] = entry
        self._maps: dict[Path, np.memmap] = {}

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name].shape

    def source(self, name: str) -> Path:
        return self._entries[name].file

    def load(self, name: str) -> np.ndarray:
        """The tensor as float32 (a fresh array; the file stays mapped, not read whole)."""
        entry = self._entries[name]
        if entry.file not in self._maps:
            self._maps[entry.file] = np.memmap(entry.file, dtype=np.uint8, mode="r")
        raw = self._maps[entry.file][entry.begin:entry.begin + entry.nbytes]
        stored = raw.view(_DTYPES[entry.dtype]).reshape(entry.shape)
        if entry.dtype == "BF16":
            return (stored.astype(np.uint32) << _BF16_SHIFT).view(np.float32)
        return stored.astype(np.float32)

    def close(self) -> None:
        self._maps.clear()
