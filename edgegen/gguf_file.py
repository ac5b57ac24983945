"""Open a GGUF file: validated metadata and memory-mapped tensors, used in place (never copied).

The header (metadata and tensor infos) is parsed by ``gguf_meta.read_header``, which is many
times faster than gguf-py's ``GGUFReader`` on big vocabularies (cold start); the data section
is one read-only memory map, and every tensor is a view of it. Every failure is a typed
``ModelFileError`` / ``UnsupportedModelError`` naming the file and the tensor or key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.constants import SUPPORTED_TYPES, GGMLType, block_geometry, row_bytes
from edgegen.errors import ModelFileError, UnsupportedModelError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class QTensor:
    """One weight as stored in the file: ``data`` is uint8 (rows, row_bytes), a view of the mmap."""
    name: str
    qtype: GGMLType
    rows: int
    cols: int
    data: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def to_float32(self) -> np.ndarray:
        """Dequantized copy (rows, cols): for small tensors (norms, biases) and tests only."""
        from edgegen.kernels.quants import dequantize
        return dequantize(self.data, self.qtype, self.cols)


@dataclass(frozen=True)
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, QTensor]
    file_size: int

    @classmethod
    def open(cls, path: str | os.PathLike) -> "GGUFFile":
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise ModelFileError(f"{path}: not a GGUF file: expected magic {GGUF_MAGIC!r}, found {magic!r}")
        from edgegen.gguf_meta import read_header
        metadata, infos = read_header(path)
        mm = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        tensors = {t.name: _tensor(path, t, mm) for t in infos}
        return cls(path=path, metadata=metadata, tensors=tensors, file_size=size)

    def require(self, key: str) -> Any:
        """A metadata value that must be present."""
        if key not in self.metadata:
            raise ModelFileError(f"{self.path.name}: missing metadata key '{key}'")
        return self.metadata[key]

    def tensor(self, name: str, shape: tuple[int, ...]) -> QTensor:
        """A tensor that must exist with the given (rows, cols) shape; 1-D tensors use (1, n)."""
        t = self.tensors.get(name)
        if t is None:
            raise ModelFileError(f"{self.path.name}: missing tensor '{name}'")
        if t.shape != tuple(shape):
            raise ModelFileError(f"{self.path.name}: tensor '{name}' has shape {t.shape}, expected {tuple(shape)}")
        return t


def _tensor(path: Path, t, mm: np.ndarray) -> QTensor:
    try:
        qtype = GGMLType(t.type_id)
    except ValueError:
        raise UnsupportedModelError(f"{path.name}: tensor '{t.name}' has unknown tensor type id {t.type_id}") from None
    if qtype not in SUPPORTED_TYPES:
        names = ", ".join(sorted(q.name for q in SUPPORTED_TYPES))
        raise UnsupportedModelError(f"{path.name}: tensor '{t.name}' has type {qtype.name}; edgegen runs {names}")
    dims = list(t.dims)  # ggml order: dims[0] is the row length
    if len(dims) > 2 and any(d != 1 for d in dims[2:]):
        raise UnsupportedModelError(f"{path.name}: tensor '{t.name}' has {len(dims)} dimensions {dims}; expected at most 2")
    cols = dims[0]
    rows = dims[1] if len(dims) > 1 else 1
    values, _ = block_geometry(qtype)
    if cols % values:
        raise ModelFileError(f"{path.name}: tensor '{t.name}' rows of {cols} values are not whole {qtype.name} blocks of {values}")
    nbytes = rows * row_bytes(qtype, cols)
    if t.offset + nbytes > mm.size:
        raise ModelFileError(f"{path.name}: tensor '{t.name}' needs bytes {t.offset}..{t.offset + nbytes} "
                             f"but the file has {mm.size}: truncated")
    data = mm[t.offset:t.offset + nbytes].reshape(rows, row_bytes(qtype, cols))
    return QTensor(name=t.name, qtype=qtype, rows=rows, cols=cols, data=data)
