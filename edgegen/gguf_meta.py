"""The header of a GGUF file, parsed without gguf-py's reader: metadata as plain Python values
(one dict from key to str / int / float / bool / list) and the tensor infos.

gguf-py's ``GGUFReader`` builds a NumPy array per string (~3.5 s for GPT-2's 100k token and
merge strings, against ~0.1 s here). The tests check that both give the same metadata and the
same tensor infos.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, TypeVar

import numpy as np
from edgegen.constants import GGUF_MAGIC, GGUFValueType

from edgegen.errors import ModelFileError

__all__ = ["TensorInfo", "read_header", "read_metadata"]
_T = TypeVar("_T")

SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32      # general.alignment when the file does not set it
MAX_DIMS = 4                # ggml tensors have at most 4 dimensions
_BYTE_ORDER_PROBE = 0xFFFF  # a version whose low 16 bits are 0 was written in the other byte order

# Fixed-size value types: (struct code, NumPy dtype).
_SCALARS: dict[GGUFValueType, tuple[str, str]] = {
    GGUFValueType.UINT8: ("B", "u1"), GGUFValueType.INT8: ("b", "i1"),
    GGUFValueType.UINT16: ("H", "u2"), GGUFValueType.INT16: ("h", "i2"),
    GGUFValueType.UINT32: ("I", "u4"), GGUFValueType.INT32: ("i", "i4"),
    GGUFValueType.UINT64: ("Q", "u8"), GGUFValueType.INT64: ("q", "i8"),
    GGUFValueType.FLOAT32: ("f", "f4"), GGUFValueType.FLOAT64: ("d", "f8"),
    GGUFValueType.BOOL: ("?", "?"),
}


class _Cursor:
    """Reads GGUF values front to back from a file, in chunks; every read is bounds-checked."""

    CHUNK = 1 << 20

    def __init__(self, f: BinaryIO, size: int, source: str):
        self.f, self.size, self.source = f, size, source
        self.order = "<"
        self.buf, self.pos, self.offset = b"", 0, 0  # offset: file position of buf[pos]
        self.key = "header"  # the key being read, for error messages

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.source}: metadata '{self.key}' at byte {self.offset}: {what}")

    def take(self, n: int) -> bytes:
        self.ensure(n)
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        self.offset += n
        return data

    def ensure(self, n: int) -> None:
        """Make the next ``n`` bytes available in ``buf`` from ``pos`` on (or fail: truncated)."""
        if self.offset + n > self.size:
            raise self.fail(f"needs {n} bytes but the file ends at byte {self.size} (truncated?)")
        if self.pos + n > len(self.buf):
            self.buf = self.buf[self.pos:] + self.f.read(max(n, self.CHUNK))
            self.pos = 0

    def strings(self, count: int) -> list[str]:
        """``count`` strings in a row (a vocabulary: tens of thousands), read straight from the buffer."""
        length = struct.Struct(self.order + "Q")
        out = []
        for _ in range(count):
            self.ensure(length.size)
            (n,) = length.unpack_from(self.buf, self.pos)
            self.ensure(length.size + n)
            start = self.pos + length.size
            raw = self.buf[start:start + n]
            self.pos = start + n
            self.offset += length.size + n
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise self.fail(f"string {len(out)} is not valid UTF-8 (byte {e.start}: {e.reason})") from None
        return out

    def scalar(self, vtype: GGUFValueType) -> Any:
        code = self.order + _SCALARS[vtype][0]
        return struct.unpack(code, self.take(struct.calcsize(code)))[0]

    def string(self) -> str:
        raw = self.take(self.scalar(GGUFValueType.UINT64))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"string is not valid UTF-8 (byte {e.start}: {e.reason})") from None

    def value_type(self) -> GGUFValueType:
        raw = self.scalar(GGUFValueType.UINT32)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise self.fail(f"unknown value type {raw}") from None

    def value(self, vtype: GGUFValueType) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            return self.array()
        return self.scalar(vtype)

    def array(self) -> list:
        item_type = self.value_type()
        count = self.scalar(GGUFValueType.UINT64)
        if item_type in _SCALARS:
            dtype = np.dtype(_SCALARS[item_type][1]).newbyteorder(self.order)
            return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).tolist()
        if item_type == GGUFValueType.STRING:
            return self.strings(count)
        return [self.array() for _ in range(count)]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor-info record: ``dims`` in ggml order (dims[0] is the row length), ``offset``
    the absolute file position of its data."""
    name: str
    dims: tuple[int, ...]
    type_id: int
    offset: int


def read_header(path: str | os.PathLike, source: str | None = None) -> tuple[dict[str, Any], list[TensorInfo]]:
    """Metadata and tensor infos of the GGUF file at ``path`` (tensor data is not read).

    Offsets are absolute: the data section starts at the first multiple of ``general.alignment``
    after the infos. Only little-endian files are accepted (the kernels read data in place).
    """
    source = source or os.path.basename(os.fspath(path))

    def parse(cur: _Cursor) -> tuple[dict[str, Any], list, int]:
        meta = _parse(cur)
        if cur.order != "<":
            raise ModelFileError(f"{source}: big-endian GGUF files are not supported (edgegen reads tensor data in place)")
        raw = [_tensor_info(cur, i) for i in range(meta["GGUF.tensor_count"])]
        return meta, raw, cur.offset

    meta, raw, end = _with_cursor(path, source, parse)
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ModelFileError(f"{source}: metadata 'general.alignment' must be a power of two, found {alignment!r}")
    start = -(-end // alignment) * alignment
    infos, seen = [], set()
    for name, dims, type_id, offset in raw:
        if name in seen:
            raise ModelFileError(f"{source}: tensor '{name}' appears twice")
        if offset % alignment:
            raise ModelFileError(f"{source}: tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}")
        seen.add(name)
        infos.append(TensorInfo(name=name, dims=dims, type_id=type_id, offset=start + offset))
    return meta, infos


def _tensor_info(cur: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    cur.key = f"tensor info {index}"
    name = cur.string()
    cur.key = f"tensor info '{name}'"
    n_dims = cur.scalar(GGUFValueType.UINT32)
    if not 1 <= n_dims <= MAX_DIMS:
        raise cur.fail(f"has {n_dims} dimensions; expected 1 to {MAX_DIMS}")
    dims = tuple(cur.scalar(GGUFValueType.UINT64) for _ in range(n_dims))
    return name, dims, cur.scalar(GGUFValueType.UINT32), cur.scalar(GGUFValueType.UINT64)


def read_metadata(path: str | os.PathLike, source: str | None = None) -> dict[str, Any]:
    """The metadata of the GGUF file at ``path`` (tensors are not read). Raises ModelFileError
    naming ``source`` (default: the file name) when malformed."""
    return _with_cursor(path, source or os.path.basename(os.fspath(path)), _parse)


def _with_cursor(path: str | os.PathLike, source: str, read: Callable[[_Cursor], _T]) -> _T:
    """``read`` over a cursor on the file at ``path``; an OS error becomes a ModelFileError."""
    try:
        with open(path, "rb") as f:
            return read(_Cursor(f, os.fstat(f.fileno()).st_size, source))
    except OSError as e:
        raise ModelFileError(f"{source}: cannot read GGUF file ({e.strerror or e})") from None


def _parse(cur: _Cursor) -> dict[str, Any]:
    magic = cur.scalar(GGUFValueType.UINT32)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{cur.source}: not a GGUF file: expected magic {GGUF_MAGIC:#010x}, found {magic:#010x}")
    version = cur.scalar(GGUFValueType.UINT32)
    if version & _BYTE_ORDER_PROBE == 0:
        cur.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(f"{cur.source}: GGUF version {version}; supported: {SUPPORTED_VERSIONS}")
    meta: dict[str, Any] = {"GGUF.version": version}
    meta["GGUF.tensor_count"] = cur.scalar(GGUFValueType.UINT64)
    meta["GGUF.kv_count"] = kv_count = cur.scalar(GGUFValueType.UINT64)
    for _ in range(kv_count):
        cur.key = "key"
        key = cur.string()
        cur.key = key
        meta[key] = cur.value(cur.value_type())
    return meta
