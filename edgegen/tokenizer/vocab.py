"""The tokenizer.ggml.* metadata of a GGUF file, checked, as one frozen Vocab.

Defaults follow llama.cpp (src/llama-vocab.cpp, llama_vocab::impl::load): a "llama" vocabulary
has BOS 1, EOS 2, UNK 0, adds BOS and a space prefix; a "gpt2" one has no default special ids and
adds BOS only where its pre-tokenizer says so (Llama 3 and friends). Tokens named like
end-of-turn markers are end-of-generation tokens and are treated as control tokens, as there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from edgegen.constants import TokenType

from edgegen.constants import Key
from edgegen.errors import TokenizerError
from edgegen.tokenizer.pretokenizers import DEFAULT_PRE, PRE_TOKENIZERS

__all__ = ["Vocab", "read_vocab", "MODELS", "EOG_TOKEN_TEXTS"]

SPM, BYTE_BPE = "llama", "gpt2"
MODELS = (SPM, BYTE_BPE)

# Texts of tokens that end a turn or a document (llama.cpp's end-of-generation list, less the
# exotic ones). Where present they join eot_ids and are control tokens whatever the file says.
EOG_TOKEN_TEXTS = frozenset({
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "<end_of_utterance>", "<｜end▁of▁sentence｜>",
})

# llama.cpp's default special ids of a SentencePiece vocabulary, used when the file sets none.
_SPM_DEFAULT_IDS = {Key.BOS_ID: 1, Key.EOS_ID: 2, Key.UNK_ID: 0}


@dataclass(frozen=True)
class Vocab:
    model: str                          # "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE)
    pre: str | None                     # gpt2: the pre-tokenizer name in PRE_TOKENIZERS; llama: as in the file
    tokens: list[str]                   # [vocab_size]
    scores: list[float]                 # [vocab_size]; zeros when the file has none
    types: list[int]                    # [vocab_size] TokenType values, EOG names promoted to CONTROL
    token_to_id: dict[str, int]
    merges: list[tuple[str, str]]       # gpt2: by rank; llama: empty
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    eot_ids: frozenset[int]
    add_bos: bool
    add_space_prefix: bool


def _fail(source: str, key: Key | str, what: str) -> TokenizerError:
    name = key.value if isinstance(key, Key) else key
    return TokenizerError(f"{source}: {name}: {what}")


def _typename(value: Any) -> str:
    return type(value).__name__


def _list(meta: Mapping[str, Any], key: Key, source: str, kind: type | tuple[type, ...], what: str) -> list | None:
    """The list at ``key`` (None when absent), checked to hold only ``kind`` values."""
    value = meta.get(key.value)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise _fail(source, key, f"expected a list of {what}, found {_typename(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, kind) or isinstance(item, bool):
            raise _fail(source, key, f"expected a list of {what}, found {_typename(item)} {item!r} at index {i}")
    return list(value)


def _flag(meta: Mapping[str, Any], key: Key, source: str, default: bool) -> bool:
    value = meta.get(key.value, default)
    if not isinstance(value, bool):
        raise _fail(source, key, f"expected a bool, found {_typename(value)} {value!r}")
    return value


def _token_id(meta: Mapping[str, Any], key: Key, source: str, n_tokens: int, default: int | None) -> int | None:
    value = meta.get(key.value, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n_tokens:
        raise _fail(source, key, f"expected a token id in [0, {n_tokens}), found {value!r}")
    return value


def _read_tokens(meta: Mapping[str, Any], source: str) -> tuple[list[str], dict[str, int]]:
    tokens = _list(meta, Key.TOKENS, source, str, "strings")
    if tokens is None:
        raise _fail(source, Key.TOKENS, "missing: the file has no tokenizer vocabulary")
    if not tokens:
        raise _fail(source, Key.TOKENS, "expected at least one token, found an empty list")
    # llama.cpp renames empty tokens so that every token has a distinct, non-empty text.
    tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    token_to_id: dict[str, int] = {}
    for i, text in enumerate(tokens):
        first = token_to_id.setdefault(text, i)
        if first != i:
            raise _fail(source, Key.TOKENS, f"duplicate token {text!r} at ids {first} and {i}")
    return tokens, token_to_id


def _per_token(meta: Mapping[str, Any], key: Key, source: str, kind: type | tuple[type, ...], what: str,
               n_tokens: int, default: float | int) -> list:
    values = _list(meta, key, source, kind, what)
    if values is None:
        return [default] * n_tokens
    if len(values) != n_tokens:
        raise _fail(source, key, f"expected {n_tokens} entries (one per token of {Key.TOKENS.value}), "
                                 f"found {len(values)}")
    return values


def _read_merges(meta: Mapping[str, Any], source: str, token_to_id: dict[str, int]) -> list[tuple[str, str]]:
    merges = _list(meta, Key.MERGES, source, str, "strings")
    if merges is None:
        raise _fail(source, Key.MERGES, f"missing: a '{BYTE_BPE}' tokenizer needs its BPE merges")
    pairs = []
    for rank, merge in enumerate(merges):
        cut = merge.find(" ", 1)  # as llama.cpp: the first space after the first character
        if cut < 0:
            raise _fail(source, Key.MERGES, f"entry {rank} {merge!r} is not two tokens separated by a space")
        left, right = merge[:cut], merge[cut + 1:]
        for part in (left, right, left + right):
            if part not in token_to_id:
                raise _fail(source, Key.MERGES, f"entry {rank} {merge!r} refers to {part!r}, "
                                                f"which is not in {Key.TOKENS.value}")
        pairs.append((left, right))
    return pairs


def read_vocab(meta: Mapping[str, Any], source: str) -> Vocab:
    """Check the tokenizer metadata of a GGUF file and gather it into a Vocab."""
    model = meta.get(Key.TOKENIZER_MODEL.value)
    if model is None:
        raise _fail(source, Key.TOKENIZER_MODEL, f"missing: expected one of {', '.join(MODELS)}")
    if model not in MODELS:
        raise _fail(source, Key.TOKENIZER_MODEL, f"unknown tokenizer model {model!r}; supported: {', '.join(MODELS)}")
    pre = meta.get(Key.TOKENIZER_PRE.value)
    if pre is not None and not isinstance(pre, str):
        raise _fail(source, Key.TOKENIZER_PRE, f"expected a string, found {_typename(pre)} {pre!r}")
    if model == BYTE_BPE:
        pre = DEFAULT_PRE if pre is None else pre
        if pre not in PRE_TOKENIZERS:
            raise _fail(source, Key.TOKENIZER_PRE, f"unknown pre-tokenizer {pre!r}; known: {', '.join(sorted(PRE_TOKENIZERS))}")

    tokens, token_to_id = _read_tokens(meta, source)
    n = len(tokens)
    scores = _per_token(meta, Key.SCORES, source, (float, int), "numbers", n, 0.0)
    types = _per_token(meta, Key.TOKEN_TYPE, source, int, "ints", n, int(TokenType.NORMAL))
    merges = _read_merges(meta, source, token_to_id) if model == BYTE_BPE else []

    defaults = _SPM_DEFAULT_IDS if model == SPM else {}
    bos_id, eos_id, unk_id, pad_id = (_token_id(meta, key, source, n, defaults.get(key))
                                      for key in (Key.BOS_ID, Key.EOS_ID, Key.UNK_ID, Key.PAD_ID))
    add_bos = _flag(meta, Key.ADD_BOS, source, model == SPM or PRE_TOKENIZERS[pre].add_bos)
    if add_bos and bos_id is None:
        raise _fail(source, Key.ADD_BOS, f"is true, but {Key.BOS_ID.value} is not set")
    add_space_prefix = _flag(meta, Key.ADD_SPACE_PREFIX, source, True) if model == SPM else False

    eog = {token_to_id[t] for t in EOG_TOKEN_TEXTS if t in token_to_id}
    types = list(types)
    for tid in eog:
        types[tid] = int(TokenType.CONTROL)
    eot_ids = frozenset(eog | ({eos_id} if eos_id is not None else set()))
    return Vocab(model=model, pre=pre, tokens=tokens, scores=[float(s) for s in scores], types=types,
                 token_to_id=token_to_id, merges=merges, bos_id=bos_id, eos_id=eos_id, unk_id=unk_id,
                 pad_id=pad_id, eot_ids=eot_ids, add_bos=add_bos, add_space_prefix=add_space_prefix)
