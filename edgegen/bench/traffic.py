"""Bytes a decode step reads, for GB/s figures: weights from the model file, plus the KV cache.

One decode step of a Llama model reads every weight tensor once (its rows are dotted with one
activation vector), one row of ``token_embd`` for the input lookup, and, when there is no
``output.weight`` (tied embeddings), all of ``token_embd`` again as the output projection.
It also reads the keys and values of every earlier position in every layer.
Not counted: activations, logits and scratch buffers (kilobytes to a few hundred KB).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"
KV_TENSORS = 2                          # keys and values
# bytes per cached key/value element: native keeps float32, llama.cpp its default F16
KV_ELEM_BYTES = {"native": 4, "llama.cpp": 2}


@dataclass(frozen=True)
class DecodeTraffic:
    weight_bytes: int        # weights read per decoded token
    kv_elems_per_pos: int    # KV cache values read per cached position (all layers, keys and values)
    file_bytes: int
    kv_elem_bytes: int = 4

    def kv_bytes(self, n_past: float) -> float:
        """KV cache bytes one decode step reads with ``n_past`` cached positions."""
        return self.kv_elems_per_pos * self.kv_elem_bytes * n_past

    def bytes_per_token(self, n_past: float) -> float:
        return self.weight_bytes + self.kv_bytes(n_past)


def decode_traffic(path: Path, backend: str = "native") -> DecodeTraffic:
    """Per-token bytes of the GGUF model at ``path`` run by ``backend`` (tensors are not read)."""
    from edgegen.gguf_file import GGUFFile
    from edgegen.models.llama import LlamaConfig

    f = GGUFFile.open(path)
    c = LlamaConfig.from_gguf(f)
    embd = f.tensors[EMBEDDING]
    weights = sum(t.nbytes for name, t in f.tensors.items() if name != EMBEDDING)
    weights += embd.nbytes // embd.rows                   # the lookup: one row
    if OUTPUT not in f.tensors:
        weights += embd.nbytes                            # tied: the output projection reads all of it
    kv_per_pos = c.n_layers * KV_TENSORS * c.kv_dim
    return DecodeTraffic(weight_bytes=weights, kv_elems_per_pos=kv_per_pos, file_bytes=f.file_size,
                         kv_elem_bytes=KV_ELEM_BYTES.get(backend, 4))


def mean_past(n_prompt: int, n_decode: int, n_depth: int = 0) -> float:
    """Mean number of cached positions over the decode steps (from n_depth + n_prompt on)."""
    return n_depth + n_prompt + (n_decode - 1) / 2
