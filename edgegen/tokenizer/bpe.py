"""Byte-level BPE (tokenizer.ggml.model = "gpt2"), on the Hugging Face ``tokenizers`` BPE model.

Text -> pre-tokenizer regexes (see pretokenizers.py) -> each byte of a word mapped to a printable
character (GPT-2's byte-level alphabet) -> merges applied by rank, lowest first, ties to the left.
This is what llama.cpp's llm_tokenizer_bpe_session does; tokenizers runs it in Rust.
"""
from __future__ import annotations

from typing import Sequence

from edgegen.tokenizer.pretokenizers import PreTokenizer, hf_pre_tokenizer

__all__ = ["BYTE_TO_CHAR", "CHAR_TO_BYTE", "BpeEncoder", "byte_level_bytes"]


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> character map: printable Latin-1 bytes stand for themselves, the other 68
    bytes (controls, space, 0x7F-0xA0, 0xAD) take the characters from U+0100 upward, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    next_char = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(next_char)
            next_char += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _byte_level_alphabet()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
# str.translate table: byte-level character -> the Latin-1 character of its byte. Latin-1 characters
# outside the alphabet go to a non-Latin-1 character so that the fast path below refuses them.
_NOT_IN_ALPHABET = 0xFFFF
_TO_LATIN1 = {cp: _NOT_IN_ALPHABET for cp in range(256)} | {ord(c): b for c, b in CHAR_TO_BYTE.items()}


def byte_level_bytes(token: str) -> bytes:
    """The bytes a byte-level token stands for. A character outside the alphabet (not made by a
    byte-level converter) contributes its own UTF-8 bytes."""
    latin1 = token.translate(_TO_LATIN1)
    try:
        return latin1.encode("latin-1")
    except UnicodeEncodeError:
        return b"".join(bytes([CHAR_TO_BYTE[c]]) if c in CHAR_TO_BYTE else c.encode("utf-8") for c in token)


class BpeEncoder:
    """Encodes plain text (no special tokens) into ids with a byte-level BPE vocabulary."""

    def __init__(self, token_to_id: dict[str, int], merges: Sequence[tuple[str, str]], pre: PreTokenizer):
        from tokenizers import Tokenizer, models

        model = models.BPE(vocab=token_to_id, merges=list(merges), ignore_merges=pre.ignore_merges)
        self._hf = Tokenizer(model)
        self._hf.pre_tokenizer = hf_pre_tokenizer(pre)

    def encode(self, text: str, after_special: bool) -> list[int]:
        """Ids of ``text``; ``after_special`` is unused (byte-level BPE adds no space prefix)."""
        del after_special
        return self._hf.encode(text, add_special_tokens=False).ids
