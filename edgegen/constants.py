"""Format constants in one place: tensor types, block geometry, GGUF keys, architectures."""
from __future__ import annotations

import enum

from gguf import GGML_QUANT_SIZES, QK_K, GGMLQuantizationType as GGMLType

__all__ = ["GGMLType", "QK_K", "SUPPORTED_TYPES", "block_geometry", "row_bytes", "Arch", "Key", "RopeStyle"]

# Tensor types the native engine runs. Anything else in a file is rejected by the loader.
SUPPORTED_TYPES: frozenset[GGMLType] = frozenset({
    GGMLType.F32, GGMLType.F16, GGMLType.BF16,
    GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q4_K, GGMLType.Q6_K,
})


def block_geometry(qtype: GGMLType) -> tuple[int, int]:
    """(values per block, bytes per block) of a tensor type."""
    return GGML_QUANT_SIZES[GGMLType(qtype)]


def row_bytes(qtype: GGMLType, cols: int) -> int:
    """Bytes of one row of ``cols`` values; ``cols`` must be a whole number of blocks."""
    values, nbytes = block_geometry(qtype)
    if cols % values:
        raise ValueError(f"{GGMLType(qtype).name} rows need a multiple of {values} values, got {cols}")
    return cols // values * nbytes


class Arch(enum.StrEnum):
    LLAMA = "llama"
    QWEN2 = "qwen2"


class RopeStyle(enum.IntEnum):
    NORMAL = 0  # rotate adjacent pairs (x[2i], x[2i+1]); llama GGUFs store Q/K permuted for it
    NEOX = 2    # rotate halves (x[i], x[i + d/2]); qwen2


class Key(enum.StrEnum):
    """GGUF metadata keys; ``{arch}`` is filled with the architecture name."""
    ARCHITECTURE = "general.architecture"
    NAME = "general.name"
    FILE_TYPE = "general.file_type"
    ALIGNMENT = "general.alignment"
    CONTEXT_LENGTH = "{arch}.context_length"
    EMBEDDING_LENGTH = "{arch}.embedding_length"
    BLOCK_COUNT = "{arch}.block_count"
    FEED_FORWARD_LENGTH = "{arch}.feed_forward_length"
    HEAD_COUNT = "{arch}.attention.head_count"
    HEAD_COUNT_KV = "{arch}.attention.head_count_kv"
    RMS_EPS = "{arch}.attention.layer_norm_rms_epsilon"
    KEY_LENGTH = "{arch}.attention.key_length"
    VALUE_LENGTH = "{arch}.attention.value_length"
    ROPE_FREQ_BASE = "{arch}.rope.freq_base"
    ROPE_DIMENSION_COUNT = "{arch}.rope.dimension_count"
    VOCAB_SIZE = "{arch}.vocab_size"
    TOKENIZER_MODEL = "tokenizer.ggml.model"
    TOKENIZER_PRE = "tokenizer.ggml.pre"
    TOKENS = "tokenizer.ggml.tokens"
    SCORES = "tokenizer.ggml.scores"
    TOKEN_TYPE = "tokenizer.ggml.token_type"
    MERGES = "tokenizer.ggml.merges"
    BOS_ID = "tokenizer.ggml.bos_token_id"
    EOS_ID = "tokenizer.ggml.eos_token_id"
    UNK_ID = "tokenizer.ggml.unknown_token_id"
    PAD_ID = "tokenizer.ggml.padding_token_id"
    ADD_BOS = "tokenizer.ggml.add_bos_token"
    ADD_EOS = "tokenizer.ggml.add_eos_token"
    ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"
    CHAT_TEMPLATE = "tokenizer.chat_template"

    def of(self, arch: str) -> str:
        return self.value.format(arch=arch)
