"""Text <-> token ids, built from a GGUF file's tokenizer metadata, matching llama.cpp's tokenizer.

    tok = Tokenizer.from_gguf("model.gguf")
    ids = tok.encode("Hello world")          # BOS first when the file says so
    text = tok.decode(ids)

Two vocabulary types: "llama" (SentencePiece BPE with byte fallback, spm.py) and "gpt2"
(byte-level BPE with a named pre-tokenizer, bpe.py / pretokenizers.py). Special tokens are cut
out of the text before either runs, as llama.cpp does: control and unknown tokens only when
``parse_special=True``, user-defined tokens always.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Protocol, Sequence

from edgegen.constants import TokenType

from edgegen.constants import Key
from edgegen.errors import TokenizerError
from edgegen.tokenizer.bpe import BpeEncoder, byte_level_bytes
from edgegen.tokenizer.pretokenizers import PRE_TOKENIZERS
from edgegen.tokenizer.spm import N_BYTES, SPACE, SpmEncoder
from edgegen.tokenizer.vocab import BYTE_BPE, SPM, Vocab, read_vocab

__all__ = ["Tokenizer"]

_RENDERED_RAW = (int(TokenType.USER_DEFINED),)                 # decoded as their text, as written
_PARSED_ALWAYS = (int(TokenType.USER_DEFINED),)                # cut out of the text even without parse_special
_PARSED_SPECIAL = (int(TokenType.CONTROL), int(TokenType.UNKNOWN), int(TokenType.USER_DEFINED))
_BYTE_TOKEN_LEN = len("<0x00>")


class _TextEncoder(Protocol):
    def encode(self, text: str, after_special: bool) -> list[int]: ...


def _byte_token_value(text: str, tid: int, source: str) -> int:
    if len(text) != _BYTE_TOKEN_LEN or not text.startswith("<0x") or not text.endswith(">"):
        raise TokenizerError(f"{source}: {Key.TOKENS.value}[{tid}] is a byte token, expected the form <0xXX>, "
                             f"found {text!r}")
    try:
        return int(text[3:5], 16)
    except ValueError:
        raise TokenizerError(f"{source}: {Key.TOKENS.value}[{tid}] is a byte token, expected <0xXX> with hex "
                             f"digits, found {text!r}") from None


def _token_pieces(vocab: Vocab, source: str) -> list[bytes]:
    """The bytes each token contributes to decoded text (llama.cpp's token_to_piece, special=False)."""
    pieces = []
    for tid, (text, ttype) in enumerate(zip(vocab.tokens, vocab.types)):
        if ttype == TokenType.NORMAL:
            pieces.append(text.replace(SPACE, " ").encode() if vocab.model == SPM else byte_level_bytes(text))
        elif ttype == TokenType.BYTE:
            pieces.append(bytes([_byte_token_value(text, tid, source)]))
        elif ttype in _RENDERED_RAW:
            pieces.append(text.encode())
        else:  # control, unknown, unused, undefined
            pieces.append(b"")
    return pieces


def _spm_byte_ids(token_to_id: Mapping[str, int]) -> list[int | None]:
    """Byte -> its byte-fallback token <0xXX>, else (ASCII only) the token of that character, else None."""
    ids: list[int | None] = []
    for b in range(N_BYTES):
        tid = token_to_id.get(f"<0x{b:02X}>")
        if tid is None and 0 < b < 0x80:
            tid = token_to_id.get(chr(b))
        ids.append(tid)
    return ids


def _specials(vocab: Vocab, types: tuple[int, ...]) -> list[tuple[str, int]]:
    """(text, id) of the tokens of the given types, longest text first (llama.cpp's matching order)."""
    found = [(text, tid) for tid, (text, t) in enumerate(zip(vocab.tokens, vocab.types)) if t in types]
    return sorted(found, key=lambda item: -len(item[0]))


def _split_special(text: str, specials: Sequence[tuple[str, int]]) -> list[str | int]:
    """Cut special tokens out of ``text``: a list of text fragments and token ids, in order.

    As llama.cpp's tokenizer_st_partition: each special token in turn (longest first) splits every
    text fragment at all its occurrences, left to right."""
    fragments: list[str | int] = [text] if text else []
    for piece, tid in specials:
        if piece not in text:
            continue
        split: list[str | int] = []
        for fragment in fragments:
            if isinstance(fragment, int) or piece not in fragment:
                split.append(fragment)
                continue
            for i, part in enumerate(fragment.split(piece)):
                if i:
                    split.append(tid)
                if part:
                    split.append(part)
        fragments = split
    return fragments


class Tokenizer:
    """A GGUF file's tokenizer. Build it with ``from_metadata`` or ``from_gguf``."""

    def __init__(self, vocab: Vocab, encoder: _TextEncoder, source: str):
        self.model: str = vocab.model
        self.pre: str | None = vocab.pre
        self.vocab_size: int = len(vocab.tokens)
        self.bos_id: int | None = vocab.bos_id
        self.eos_id: int | None = vocab.eos_id
        self.unk_id: int | None = vocab.unk_id
        self.pad_id: int | None = vocab.pad_id
        self.eot_ids: frozenset[int] = vocab.eot_ids
        self.add_bos: bool = vocab.add_bos
        self._vocab = vocab
        self._encoder = encoder
        self._source = source
        self._pieces = _token_pieces(vocab, source)
        self._specials_always = _specials(vocab, _PARSED_ALWAYS)
        self._specials_parsed = _specials(vocab, _PARSED_SPECIAL)
        # SentencePiece puts a space before the text; decoding drops it again.
        self._strip_first_space = vocab.model == SPM and vocab.add_space_prefix

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], source: str) -> "Tokenizer":
        """Build from GGUF metadata (key -> Python value); ``source`` names the file in errors."""
        vocab = read_vocab(meta, source)
        encoder: _TextEncoder
        if vocab.model == SPM:
            encoder = SpmEncoder(vocab.token_to_id, vocab.scores, _spm_byte_ids(vocab.token_to_id),
                                 vocab.add_space_prefix, source)
        else:
            assert vocab.model == BYTE_BPE and vocab.pre is not None
            encoder = BpeEncoder(vocab.token_to_id, vocab.merges, PRE_TOKENIZERS[vocab.pre])
        return cls(vocab, encoder, source)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> "Tokenizer":
        """Build from the metadata of a GGUF file (the tensors are not read)."""
        from edgegen.gguf_meta import read_metadata
        source = os.path.basename(os.fspath(path))
        return cls.from_metadata(read_metadata(path, source), source)

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``. ``add_bos``: None -> the file's tokenizer.ggml.add_bos_token.
        ``parse_special``: also turn the text of control tokens (``<|im_end|>``, ``</s>``) into them."""
        if add_bos is None:
            add_bos = self.add_bos
        ids: list[int] = []
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError(f"{self._source}: cannot add BOS: {Key.BOS_ID.value} is not set")
            ids.append(self.bos_id)
        after_special = True  # the start of the text counts as following a special token
        for fragment in _split_special(text, self._specials_parsed if parse_special else self._specials_always):
            if isinstance(fragment, int):
                ids.append(fragment)
                after_special = True
            else:
                ids.extend(self._encoder.encode(fragment, after_special))
                after_special = False
        return ids

    def token_bytes(self, id: int) -> bytes:
        """The raw bytes token ``id`` adds to the text (b"" for control tokens). A multi-byte
        character may be split over several tokens: join the bytes before decoding them."""
        if not 0 <= id < self.vocab_size:
            raise TokenizerError(f"{self._source}: token id {id} is out of range [0, {self.vocab_size})")
        return self._pieces[id]

    def token_text(self, id: int) -> str:
        """The vocabulary entry of token ``id`` as stored ("<|im_end|>", "Ġthe"): for special
        tokens, the text a chat template writes for them."""
        if not 0 <= id < self.vocab_size:
            raise TokenizerError(f"{self._source}: token id {id} is out of range [0, {self.vocab_size})")
        return self._vocab.tokens[id]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``: control tokens are skipped, invalid UTF-8 becomes U+FFFD. For a
        SentencePiece vocabulary the space put before the text when encoding is dropped again."""
        pieces = [self.token_bytes(i) for i in ids]
        if self._strip_first_space:
            first = next((k for k, p in enumerate(pieces) if p), None)
            if first is not None and pieces[first].startswith(b" "):
                pieces[first] = pieces[first][1:]
        return b"".join(pieces).decode("utf-8", errors="replace")

    def describe(self) -> str:
        """One line: type, pre-tokenizer, size, special ids."""
        kind = "SentencePiece BPE" if self.model == SPM else "byte-level BPE"
        merges = f", {len(self._vocab.merges)} merges" if self.model == BYTE_BPE else ""

        def named(tid: int | None) -> str:
            return "none" if tid is None else f"{tid} {self._vocab.tokens[tid]!r}"
        eot = ", ".join(named(t) for t in sorted(self.eot_ids)) or "none"
        return (f"{self.model} ({kind}), pre-tokenizer {self.pre or 'none'}, {self.vocab_size} tokens{merges}; "
                f"bos {named(self.bos_id)}, eos {named(self.eos_id)}, eot [{eot}], "
                f"add_bos {'yes' if self.add_bos else 'no'}")

    def __repr__(self) -> str:
        return f"Tokenizer({self.describe()})"
