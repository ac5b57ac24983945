"""Which GGML type each tensor gets under a ``--quant`` scheme, and the quantizers that make it.

Rules (those of llama.cpp's convert_hf_to_gguf.py and llama-quant.cpp):
- 1-D tensors (norms, biases) stay F32 under every scheme;
- f32 / f16 / q8_0 / q4_0: every 2-D weight, token_embd and output included, gets that type;
- q4_k_m (llama.cpp's Q4_K_M without an importance matrix): Q6_K for output.weight (for
  token_embd.weight when the embeddings are tied and there is no output.weight), Q6_K for
  attn_v and ffn_down on the layers ``use_more_bits`` picks, Q4_K for everything else.

Fallbacks: a k-quant needs rows that are a whole number of 256-value superblocks. Where they
are not, Q6_K falls back to Q8_0 (as in llama.cpp) and Q4_K to Q4_0 (llama.cpp uses Q5_0,
which edgegen does not run). A type whose block does not divide the row falls back to F16.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from gguf import LlamaFileType
from gguf import quants as gguf_quants

from edgegen.constants import GGMLType, block_geometry
from edgegen.errors import UsageError
from edgegen.kernels.quants import dequantize

from .kquants import quantize_q4_k, quantize_q6_k

__all__ = ["QuantScheme", "SCHEMES", "scheme_for", "use_more_bits", "tensor_type", "quantize_tensor",
           "dequantize_tensor", "relative_rms_error"]


@dataclass(frozen=True)
class QuantScheme:
    name: str
    file_type: LlamaFileType     # general.file_type
    weight_type: GGMLType        # the type of 2-D weights before any per-tensor rule
    mixed: bool = False          # apply the Q4_K_M per-tensor rules


SCHEMES: dict[str, QuantScheme] = {
    "f32": QuantScheme("f32", LlamaFileType.ALL_F32, GGMLType.F32),
    "f16": QuantScheme("f16", LlamaFileType.MOSTLY_F16, GGMLType.F16),
    "q8_0": QuantScheme("q8_0", LlamaFileType.MOSTLY_Q8_0, GGMLType.Q8_0),
    "q4_0": QuantScheme("q4_0", LlamaFileType.MOSTLY_Q4_0, GGMLType.Q4_0),
    "q4_k_m": QuantScheme("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, GGMLType.Q4_K, mixed=True),
}

KQUANT_FALLBACK: dict[GGMLType, GGMLType] = {GGMLType.Q4_K: GGMLType.Q4_0, GGMLType.Q6_K: GGMLType.Q8_0}
MORE_BITS_SUFFIXES = ("attn_v.weight", "ffn_down.weight")
OUTPUT_NAME = "output.weight"
EMBEDDING_NAME = "token_embd.weight"
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")
_MORE_BITS_EDGE = 8      # the first and last 1/8 of the layers
_MORE_BITS_PERIOD = 3    # and every third layer in between


def scheme_for(quant: str) -> QuantScheme:
    if quant not in SCHEMES:
        raise UsageError(f"quant {quant!r} is not supported; expected one of {', '.join(SCHEMES)}")
    return SCHEMES[quant]


def use_more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits in Q4_K_M (llama-quant.cpp)."""
    edge = n_layers // _MORE_BITS_EDGE
    return (layer < edge or layer >= (_MORE_BITS_EDGE - 1) * n_layers // _MORE_BITS_EDGE
            or (layer - edge) % _MORE_BITS_PERIOD == _MORE_BITS_PERIOD - 1)


def _mixed_type(name: str, n_layers: int, has_output: bool) -> GGMLType:
    if name == OUTPUT_NAME or (name == EMBEDDING_NAME and not has_output):
        return GGMLType.Q6_K
    match = _BLOCK.match(name)
    if match and match.group(2) in MORE_BITS_SUFFIXES and use_more_bits(int(match.group(1)), n_layers):
        return GGMLType.Q6_K
    return GGMLType.Q4_K


def tensor_type(scheme: QuantScheme, name: str, shape: tuple[int, ...], n_layers: int, has_output: bool) -> GGMLType:
    """The GGML type tensor ``name`` (GGUF name, NumPy shape) is stored as."""
    if len(shape) < 2:
        return GGMLType.F32
    qtype = _mixed_type(name, n_layers, has_output) if scheme.mixed else scheme.weight_type
    cols = shape[-1]
    if qtype in KQUANT_FALLBACK and cols % block_geometry(qtype)[0]:
        qtype = KQUANT_FALLBACK[qtype]
    if cols % block_geometry(qtype)[0]:
        qtype = GGMLType.F16
    return qtype


def stored_array_spec(qtype: GGMLType, shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.dtype, int]:
    """(array shape, array dtype, bytes) of the data written for a tensor of ``shape`` and ``qtype``."""
    if qtype == GGMLType.F32:
        return shape, np.dtype(np.float32), int(np.prod(shape)) * 4
    if qtype == GGMLType.F16:
        return shape, np.dtype(np.float16), int(np.prod(shape)) * 2
    values, nbytes = block_geometry(qtype)
    byte_shape = (*shape[:-1], shape[-1] // values * nbytes)
    return byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape))


def quantize_tensor(data: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """float32 tensor -> the array written to the file (float32, float16, or uint8 block bytes)."""
    if qtype == GGMLType.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == GGMLType.F16:
        return data.astype(np.float16)
    if qtype == GGMLType.Q4_K:
        return quantize_q4_k(data.reshape(-1, data.shape[-1])).reshape(stored_array_spec(qtype, data.shape)[0])
    if qtype == GGMLType.Q6_K:
        return quantize_q6_k(data.reshape(-1, data.shape[-1])).reshape(stored_array_spec(qtype, data.shape)[0])
    return gguf_quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)


def dequantize_tensor(stored: np.ndarray, qtype: GGMLType, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values a reader gets back from ``quantize_tensor``'s output."""
    if qtype in (GGMLType.F32, GGMLType.F16):
        return stored.astype(np.float32).reshape(shape)
    return dequantize(stored.reshape(-1, stored.shape[-1]), qtype, shape[-1]).reshape(shape)


def relative_rms_error(original: np.ndarray, stored: np.ndarray, qtype: GGMLType) -> float:
    """||W - dequant(quant(W))|| / ||W|| (0 for an all-zero W stored exactly)."""
    back = dequantize_tensor(stored, qtype, original.shape).astype(np.float64)
    ref = original.astype(np.float64)
    norm = float(np.linalg.norm(ref))
    err = float(np.linalg.norm(ref - back))
    return err / norm if norm > 0 else err
