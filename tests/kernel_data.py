"""Shared by the kernel tests (parity, C++ and Numba): random weight rows in every GGUF type,
the matmul error bound, and the 1-vs-2-thread bit-identity check."""
from __future__ import annotations

import numpy as np
from gguf.quants import quantize

from edgegen.constants import GGMLType, block_geometry
from edgegen.kernels import ref
from edgegen.kernels.quants import dequantize

# types gguf-py can quantize; the others get random (valid) block bytes
GGUF_QUANTIZABLE = {GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1}
# Byte offsets of the f16 scale fields (d, dmin, m) inside one block, per block format.
F16_FIELDS = {GGMLType.Q8_0: (0,), GGMLType.Q4_0: (0,), GGMLType.Q4_1: (0, 2), GGMLType.Q4_K: (0, 2),
              GGMLType.Q6_K: (208,)}
MATMUL_RTOL = 1e-4  # of sum_k |W[n,k] x[t,k]|: the scale of a float32 dot product's rounding error
THREADS = (1, 2)


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


def run_threads(fn, out: np.ndarray, *args) -> np.ndarray:
    """Run ``fn(*args, out, threads=...)`` with 1 and 2 threads; assert equal bits; return the result."""
    results = []
    for threads in THREADS:
        out[...] = np.nan
        fn(*args, out, threads=threads)
        results.append(out.copy())
    np.testing.assert_array_equal(results[0].view(np.uint32), results[1].view(np.uint32))
    return results[0]


def assert_matmul_close(w: np.ndarray, qtype: GGMLType, K: int, x: np.ndarray, out: np.ndarray,
                        label: str, int8_act: bool = False) -> None:
    """|out - reference| <= MATMUL_RTOL * sum_k |W[n,k] x'[t,k]|, element by element.

    The reference is matmul_ref, or with ``int8_act`` matmul_act_q8_ref (x' = x rounded to 8 bits
    per block, as the compiled dot path does): either way only float32 summation may differ.
    """
    want = np.empty_like(out)
    (ref.matmul_act_q8_ref if int8_act else ref.matmul_ref)(w, qtype, K, x, want)
    W = dequantize(w, qtype, K).astype(np.float64)
    bound = MATMUL_RTOL * (np.abs(x.astype(np.float64)) @ np.abs(W).T)
    err = np.abs(out.astype(np.float64) - want)
    assert (err <= bound).all(), f"{label}: max err {err.max():.3g}, max allowed {bound.min():.3g}"
