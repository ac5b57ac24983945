"""Random kernel inputs shared by the C++ and Numba kernel tests: weight rows in every GGUF type."""
from __future__ import annotations

import numpy as np
from gguf.quants import quantize

from edgegen.constants import GGMLType, block_geometry

# types gguf-py can quantize; the others get random (valid) block bytes
GGUF_QUANTIZABLE = {GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1}
# Byte offsets of the f16 scale fields (d, dmin, m) inside one block, per block format.
F16_FIELDS = {GGMLType.Q8_0: (0,), GGMLType.Q4_0: (0,), GGMLType.Q4_1: (0, 2), GGMLType.Q4_K: (0, 2),
              GGMLType.Q6_K: (208,)}


def random_blocks(qtype: GGMLType, N: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes (every code reachable) with each f16 scale field a small valid half."""
    values, nbytes = block_geometry(qtype)
    blocks = rng.integers(0, 256, size=(N * K // values, nbytes), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        halves = rng.uniform(0.001, 0.02, size=blocks.shape[0]).astype(np.float16)
        blocks[:, off:off + 2] = halves.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(N, -1)


def make_weights(qtype: GGMLType, N: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """Raw rows (N, row_bytes) uint8 of a random matrix stored as ``qtype``, read-only like an mmap."""
    a = rng.standard_normal((N, K)).astype(np.float32)
    if qtype == GGMLType.F32:
        w = a.view(np.uint8)
    elif qtype == GGMLType.F16:
        w = a.astype(np.float16).view(np.uint8)
    elif qtype in GGUF_QUANTIZABLE:
        w = quantize(a, qtype)
    else:
        w = random_blocks(qtype, N, K, rng)
    w.flags.writeable = False
    return w
