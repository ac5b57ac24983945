"""Byte-level BPE pre-tokenizers: the value of ``tokenizer.ggml.pre`` -> the regexes that split text into words.

As in llama.cpp, a pre-tokenizer is a list of regexes applied in turn: each one splits every
piece left by the one before, and text a regex does not match stays a piece of its own
("isolated" splitting). The regexes are llama.cpp's (src/llama-vocab.cpp), which follow each
model's tokenizer.json. The table is data: add a name by adding an entry.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PreTokenizer", "PRE_TOKENIZERS", "DEFAULT_PRE", "hf_pre_tokenizer", "split_words"]

# GPT-2: contractions, letters, digits, other symbols (each with one optional leading space), spaces.
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"

# Llama 3 (tiktoken cl100k style): case-insensitive contractions, digits in groups of at most 3.
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2: as Llama 3 but every digit on its own.
QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# GPT-4o (o200k): words split at lower->upper case changes, contractions attached, digits in threes.
# llama.cpp's rewrite of the tokenizer.json regex, which it runs: "upper" is any letter but a-z,
# "lower" any letter but A-Z, and combining marks are not letters (the original counts \p{M} in).
_UPPER, _LOWER = r"((?=[\p{L}])([^a-z]))", r"((?=[\p{L}])([^A-Z]))"
_CONTRACTION = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT4O = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTION}?|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_CONTRACTION}?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Mistral Tekken: as GPT-4o without contractions, every digit on its own.
TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

EACH_DIGIT = r"\p{N}"
THREE_DIGITS = r"[0-9][0-9][0-9]"
BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"


@dataclass(frozen=True)
class PreTokenizer:
    """How a byte-level BPE vocabulary splits text before merging."""
    regexes: tuple[str, ...]
    ignore_merges: bool = False  # a word that is itself a token is emitted whole, without merging
    add_bos: bool = False        # BOS is added by default (the file's add_bos_token still overrides)


_GPT2 = PreTokenizer((GPT2,))
_LLAMA3 = PreTokenizer((LLAMA3,), ignore_merges=True, add_bos=True)
_LLAMA3_REGEX_ONLY = PreTokenizer((LLAMA3,))
_QWEN2 = PreTokenizer((QWEN2,))
_DIGITS_GPT2 = PreTokenizer((EACH_DIGIT, GPT2))
_GPT4O = PreTokenizer((GPT4O,))
_BLOOM = PreTokenizer((BLOOM,))

DEFAULT_PRE = "default"

# tokenizer.ggml.pre -> pre-tokenizer. A file without the key uses "default", as llama.cpp does.
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    # llama.cpp's fallback for BPE files that name no pre-tokenizer: punctuation runs first.
    "default": PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", THREE_DIGITS)),
    "gpt-2": _GPT2, "phi-2": _GPT2, "mpt": _GPT2, "olmo": _GPT2, "jais": _GPT2,
    "llama-bpe": _LLAMA3, "llama3": _LLAMA3, "llama-v3": _LLAMA3, "falcon3": _LLAMA3, "pixtral": _LLAMA3,
    "dbrx": _LLAMA3_REGEX_ONLY, "smaug-bpe": _LLAMA3_REGEX_ONLY,
    "qwen2": _QWEN2, "deepseek-r1-qwen": _QWEN2, "stablelm2": _QWEN2, "megrez": _QWEN2,
    # SmolLM / SmolLM2, StarCoder and friends: every digit alone, then GPT-2.
    "smollm": _DIGITS_GPT2, "starcoder": _DIGITS_GPT2, "refact": _DIGITS_GPT2, "codeshell": _DIGITS_GPT2,
    "command-r": _DIGITS_GPT2, "exaone": _DIGITS_GPT2, "minerva-7b": _DIGITS_GPT2,
    "falcon": PreTokenizer((r"[\p{P}\$\+<=>\^~\|`]+", GPT2, THREE_DIGITS)),
    "gpt-4o": _GPT4O, "llama4": _GPT4O,
    "tekken": PreTokenizer((TEKKEN,), ignore_merges=True, add_bos=True),
    "bloom": _BLOOM, "poro-chat": _BLOOM, "gpt3-finnish": _BLOOM,
}


def hf_pre_tokenizer(pre: PreTokenizer, byte_level: bool = True):
    """The ``tokenizers`` pre-tokenizer: each regex as an isolating split, then (``byte_level``)
    each byte of a word mapped to GPT-2's byte-level alphabet."""
    from tokenizers import Regex, pre_tokenizers

    steps = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in pre.regexes]
    if byte_level:
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def split_words(pre: PreTokenizer, text: str) -> list[str]:
    """The words ``text`` is cut into before BPE merging (for tests and debugging)."""
    return [word for word, _ in hf_pre_tokenizer(pre, byte_level=False).pre_tokenize_str(text)]
