"""Format constants in one place: tensor types, block geometry, GGUF keys, architectures."""
from __future__ import annotations

import enum

__all__ = ["GGMLType", "QK_K", "GGML_QUANT_SIZES", "GGUF_MAGIC", "GGUFValueType", "TokenType", "SUPPORTED_TYPES",
           "block_geometry", "row_bytes", "Arch", "Key", "RopeStyle"]

# The GGUF format's numbers, as gguf-py (gguf.constants) defines them; tests/test_constants.py
# checks every entry against gguf-py. They are restated here so that loading a model does not
# import gguf-py (its package import pulls in its writer, reader and YAML: about 70 ms of cold
# start); the converters and tests still use gguf-py itself.
GGUF_MAGIC = 0x46554747   # "GGUF" little endian
QK_K = 256                # values per K-quant super-block


class GGMLType(enum.IntEnum):
    """Tensor types (gguf.GGMLQuantizationType)."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


# (values per block, bytes per block) of every type (gguf.GGML_QUANT_SIZES)
GGML_QUANT_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4), GGMLType.F16: (1, 2), GGMLType.Q4_0: (32, 18), GGMLType.Q4_1: (32, 20),
    GGMLType.Q5_0: (32, 22), GGMLType.Q5_1: (32, 24), GGMLType.Q8_0: (32, 34), GGMLType.Q8_1: (32, 40),
    GGMLType.Q2_K: (256, 84), GGMLType.Q3_K: (256, 110), GGMLType.Q4_K: (256, 144), GGMLType.Q5_K: (256, 176),
    GGMLType.Q6_K: (256, 210), GGMLType.Q8_K: (256, 292), GGMLType.IQ2_XXS: (256, 66), GGMLType.IQ2_XS: (256, 74),
    GGMLType.IQ3_XXS: (256, 98), GGMLType.IQ1_S: (256, 50), GGMLType.IQ4_NL: (32, 18), GGMLType.IQ3_S: (256, 110),
    GGMLType.IQ2_S: (256, 82), GGMLType.IQ4_XS: (256, 136), GGMLType.I8: (1, 1), GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4), GGMLType.I64: (1, 8), GGMLType.F64: (1, 8), GGMLType.IQ1_M: (256, 56),
    GGMLType.BF16: (1, 2), GGMLType.TQ1_0: (256, 54), GGMLType.TQ2_0: (256, 66), GGMLType.MXFP4: (32, 17),
    GGMLType.NVFP4: (64, 36), GGMLType.Q1_0: (128, 18),
}


class GGUFValueType(enum.IntEnum):
    """Metadata value types (gguf.GGUFValueType)."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


class TokenType(enum.IntEnum):
    """Vocabulary token types (gguf.TokenType)."""
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6

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
