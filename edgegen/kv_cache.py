"""KV cache: preallocated for the context, changed only through ``append`` and ``truncate``."""
from __future__ import annotations

import numpy as np

from edgegen.errors import ContextLengthError


class KVCache:
    """Keys and values per layer, (n_layers, n_kv_heads, capacity, head_dim) float32."""

    def __init__(self, n_layers: int, n_kv_heads: int, capacity: int, head_dim: int):
        shape = (n_layers, n_kv_heads, capacity, head_dim)
        self.k = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.capacity = capacity
        self._filled = [0] * n_layers  # positions written, per layer

    @property
    def length(self) -> int:
        """Positions held by every layer (the next token goes here)."""
        return min(self._filled)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def append(self, layer: int, pos: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write k, v (T, n_kv_heads, head_dim) for positions pos .. pos+T-1 of ``layer``."""
        T = k.shape[0]
        self._check_write(self._filled[layer], pos, T)
        if k.shape != v.shape or k.shape[1:] != (self.k.shape[1], self.k.shape[3]):
            raise ValueError(f"KV cache: k {k.shape} / v {v.shape} do not match (T, {self.k.shape[1]}, {self.k.shape[3]})")
        self.k[layer, :, pos:pos + T] = k.transpose(1, 0, 2)
        self.v[layer, :, pos:pos + T] = v.transpose(1, 0, 2)
        self._filled[layer] = pos + T

    def check_all_layers(self, pos: int, T: int) -> None:
        """Check that every layer may take positions pos .. pos+T-1 next (before a compiled
        forward writes them into ``k`` / ``v`` directly); ``commit`` then records them."""
        self._check_write(self.length, pos, T)

    def commit(self, pos: int, T: int) -> None:
        """Record that every layer holds positions pos .. pos+T-1 (after ``check_all_layers``)."""
        self._filled = [pos + T] * len(self._filled)

    def _check_write(self, filled: int, pos: int, T: int) -> None:
        if pos + T > self.capacity:
            raise ContextLengthError(f"context full: positions {pos}..{pos + T - 1} do not fit in a context of {self.capacity}")
        if pos > filled:
            raise ValueError(f"KV cache: write at {pos} would leave a gap after {filled}")

    def truncate(self, n: int) -> None:
        """Forget every position from ``n`` on (to reuse a shared prefix)."""
        if not 0 <= n <= self.capacity:
            raise ValueError(f"KV cache: truncate to {n} outside 0..{self.capacity}")
        self._filled = [min(f, n) for f in self._filled]

    def keys(self, layer: int) -> np.ndarray:
        return self.k[layer]

    def values(self, layer: int) -> np.ndarray:
        return self.v[layer]
