"""Tokenizer: llama.cpp's test vectors exactly, round trips, byte streaming, special tokens, errors."""
from __future__ import annotations

import codecs
import time
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader

from edgegen.constants import Key
from edgegen.errors import ModelFileError, TokenizerError
from edgegen.gguf_meta import read_metadata
from edgegen.tokenizer import Tokenizer
from edgegen.tokenizer.pretokenizers import PRE_TOKENIZERS, split_words

VOCAB = Path(__file__).parent / "data" / "vocab"
SPM, GPT2 = "llama-spm", "gpt-2"
NAMES = (SPM, GPT2)
SEPARATOR = "\n__ggml_vocab_test__\n"
DROP = object()  # _edit: remove the key
SPM_BOS, SPM_EOS, SPM_UNK, SPM_HELLO = 1, 2, 0, 15043     # "<s>", "</s>", "<unk>", "▁Hello"
GPT2_EOT = 50256                                         # "<|endoftext|>"


def _file(name: str) -> str:
    return f"ggml-vocab-{name}.gguf"


def _cases(name: str) -> list[tuple[str, list[int]]]:
    texts = (VOCAB / f"{_file(name)}.inp").read_bytes().decode("utf-8").split(SEPARATOR)
    lines = (VOCAB / f"{_file(name)}.out").read_bytes().decode("utf-8").split("\n")
    if len(lines) == len(texts) + 1 and lines[-1] == "":  # a final newline
        lines.pop()
    assert len(lines) == len(texts), f"{name}: {len(texts)} texts but {len(lines)} id lines"
    return [(text, [int(v) for v in line.split()]) for text, line in zip(texts, lines)]


CASES = [pytest.param(name, text, ids, id=f"{name}-{i}") for name in NAMES for i, (text, ids) in enumerate(_cases(name))]


@pytest.fixture(scope="module")
def meta() -> dict[str, dict[str, Any]]:
    return {name: read_metadata(VOCAB / _file(name)) for name in NAMES}


@pytest.fixture(scope="module")
def tok(meta) -> dict[str, Tokenizer]:
    return {name: Tokenizer.from_metadata(meta[name], _file(name)) for name in NAMES}


def _edit(meta: dict[str, Any], key: Key, value: Any) -> dict[str, Any]:
    """A copy of ``meta`` with ``key`` set to ``value`` (or removed, for DROP)."""
    out = dict(meta)
    if value is DROP:
        del out[key.value]
    else:
        out[key.value] = value
    return out


def _with_token(meta: dict[str, Any], text: str, token_type: int) -> dict[str, Any]:
    """A copy of ``meta`` with one token appended (id = the old vocabulary size)."""
    out = _edit(meta, Key.TOKENS, [*meta[Key.TOKENS.value], text])
    out = _edit(out, Key.TOKEN_TYPE, [*meta[Key.TOKEN_TYPE.value], token_type])
    if Key.SCORES.value in meta:
        out = _edit(out, Key.SCORES, [*meta[Key.SCORES.value], 0.0])
    return out


# --- llama.cpp's vectors --------------------------------------------------------------------------

@pytest.mark.parametrize("name, text, expected", CASES)
def test_vectors(tok, name, text, expected):
    assert tok[name].encode(text, add_bos=False, parse_special=False) == expected


@pytest.mark.parametrize("name, text, expected", CASES)
def test_round_trip(tok, name, text, expected):
    del expected
    assert tok[name].decode(tok[name].encode(text, add_bos=False)) == text
    assert tok[name].decode(tok[name].encode(text, add_bos=True)) == text  # BOS is a control token: skipped


def test_case_counts():
    assert [len(_cases(name)) for name in NAMES] == [47, 47]


# --- bytes and streaming ---------------------------------------------------------------------------

SPLIT_TEXT = "Llamas 🦙 say 你好世界, ⚡️ déjà vu 🤖🤖"


@pytest.mark.parametrize("name", NAMES)
def test_token_bytes_rebuild_characters_split_over_tokens(tok, name):
    t = tok[name]
    ids = t.encode(SPLIT_TEXT, add_bos=False)
    pieces = [t.token_bytes(i) for i in ids]
    leading = " " if name == SPM else ""  # SentencePiece's space prefix is part of the first token
    assert b"".join(pieces) == (leading + SPLIT_TEXT).encode("utf-8")
    assert t.decode(ids) == SPLIT_TEXT
    # the test is only worth something if some token holds part of a character
    assert any(_not_utf8(p) for p in pieces)
    streamed = codecs.getincrementaldecoder("utf-8")()
    assert "".join(streamed.decode(p) for p in pieces) + streamed.decode(b"", final=True) == leading + SPLIT_TEXT


def _not_utf8(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_decode_replaces_incomplete_characters(tok):
    t = tok[GPT2]
    ids = t.encode("🦙", add_bos=False)
    assert len(ids) > 1
    assert t.decode(ids[:1]) == "\ufffd"


@pytest.mark.parametrize("name", NAMES)
def test_token_id_out_of_range(tok, name):
    t = tok[name]
    for bad in (-1, t.vocab_size):
        with pytest.raises(TokenizerError, match=str(bad)):
            t.token_bytes(bad)
        with pytest.raises(TokenizerError, match=_file(name)):
            t.decode([bad])


# --- special tokens ----------------------------------------------------------------------------------

def test_spm_special_tokens_only_with_parse_special(tok):
    t = tok[SPM]
    text = "<s>Hello</s>"
    # after a special token the text gets the space prefix again: "▁Hello"
    assert t.encode(text, add_bos=False, parse_special=True) == [SPM_BOS, SPM_HELLO, SPM_EOS]
    plain = t.encode(text, add_bos=False)
    assert not {SPM_BOS, SPM_EOS} & set(plain)
    assert t.decode(plain) == text
    assert t.encode("<unk>", add_bos=False, parse_special=True) == [SPM_UNK]
    assert SPM_UNK not in t.encode("<unk>", add_bos=False)
    assert t.decode([SPM_BOS, SPM_HELLO, SPM_EOS]) == "Hello"  # control tokens are skipped


def test_gpt2_special_tokens_only_with_parse_special(tok):
    t = tok[GPT2]
    text = "Hi<|endoftext|>there"
    assert t.encode(text, parse_special=True) == [*t.encode("Hi"), GPT2_EOT, *t.encode("there")]
    plain = t.encode(text)
    assert GPT2_EOT not in plain
    assert t.decode(plain) == text
    assert t.decode([GPT2_EOT]) == "" and t.token_bytes(GPT2_EOT) == b""


def test_user_defined_tokens_are_always_parsed(meta):
    t = Tokenizer.from_metadata(_with_token(meta[GPT2], "<tool_call>", 4), "user-defined")
    new_id = t.vocab_size - 1
    text = "call <tool_call>now"
    expected = [*t.encode("call "), new_id, *t.encode("now")]
    assert t.encode(text) == expected
    assert t.encode(text, parse_special=True) == expected
    assert t.decode(expected) == text  # user-defined tokens decode to their text


def test_end_of_turn_names_are_control_and_eot(meta):
    # "<|im_end|>" appended as a *normal* token: llama.cpp treats it as control and end-of-generation
    t = Tokenizer.from_metadata(_with_token(meta[GPT2], "<|im_end|>", 1), "im-end")
    im_end = t.vocab_size - 1
    assert t.eot_ids == frozenset({GPT2_EOT, im_end})
    assert t.encode("a<|im_end|>", parse_special=True) == [*t.encode("a"), im_end]
    assert im_end not in t.encode("a<|im_end|>")
    assert t.decode([im_end]) == ""


def test_special_ids_and_describe(tok):
    s, g = tok[SPM], tok[GPT2]
    assert (s.model, s.vocab_size, s.bos_id, s.eos_id, s.eot_ids) == ("llama", 32000, SPM_BOS, SPM_EOS, {SPM_EOS})
    assert (g.model, g.pre, g.vocab_size, g.bos_id, g.eos_id, g.eot_ids) == (
        "gpt2", "gpt-2", 50257, GPT2_EOT, GPT2_EOT, {GPT2_EOT})
    for t, words in ((s, ("llama", "32000", "<s>", "</s>")), (g, ("gpt2", "gpt-2", "50257", "50000 merges"))):
        line = t.describe()
        assert "\n" not in line and all(w in line for w in words), line


# --- BOS and space prefix ----------------------------------------------------------------------------

def test_add_bos_defaults(meta, tok):
    assert tok[SPM].encode("Hello") == [SPM_BOS, SPM_HELLO]
    assert tok[SPM].encode("Hello", add_bos=False) == [SPM_HELLO]
    assert tok[GPT2].encode("Hello")[0] != GPT2_EOT
    assert tok[GPT2].encode("Hello", add_bos=True)[0] == GPT2_EOT
    assert tok[SPM].encode("") == [SPM_BOS] and tok[SPM].encode("", add_bos=False) == []
    no_bos = Tokenizer.from_metadata(_edit(meta[SPM], Key.ADD_BOS, False), "no-bos")
    assert no_bos.encode("Hello") == [SPM_HELLO]
    # Llama 3 style files add BOS by default, unless the file says otherwise
    llama3 = _edit(meta[GPT2], Key.TOKENIZER_PRE, "llama-bpe")
    assert Tokenizer.from_metadata(llama3, "llama3").encode("Hello")[0] == GPT2_EOT
    assert Tokenizer.from_metadata(_edit(llama3, Key.ADD_BOS, False), "llama3").encode("Hello")[0] != GPT2_EOT


def test_spm_without_space_prefix(meta, tok):
    t = Tokenizer.from_metadata(_edit(meta[SPM], Key.ADD_SPACE_PREFIX, False), "no-prefix")
    ids = t.encode("Hello", add_bos=False)
    assert ids != [SPM_HELLO] and not t.token_bytes(ids[0]).startswith(b" ")
    assert t.decode(ids) == "Hello"
    assert t.encode(" Hello", add_bos=False) == [SPM_HELLO]
    assert t.decode([SPM_HELLO]) == " Hello"  # nothing to strip when no prefix was added
    assert tok[SPM].decode([SPM_HELLO]) == "Hello"


# --- pre-tokenizers ----------------------------------------------------------------------------------

PRE_TEXT = "Hello world 1234567 I'M!!\n\n\tOK  "
# Words the pre-tokenizers cut PRE_TEXT into, as llama.cpp's regexes do. (Token ids with these
# pre-tokenizers were compared with llama.cpp's, via llama-cpp-python 0.3.36, on PRE_TEXT and
# 1,500 random texts: identical.)
PRE_WORDS = {
    "gpt-2": ["Hello", " world", " 1234567", " I", "'", "M", "!!", "\n\n", "\t", "OK", "  "],
    "default": ["Hello", " world", " ", "123", "456", "7", " I", "'", "M", "!!", "\n\n", "\t", "OK", "  "],
    "llama-bpe": ["Hello", " world", " ", "123", "456", "7", " I", "'M", "!!\n\n", "\tOK", "  "],
    "qwen2": ["Hello", " world", " ", *"1234567", " I", "'M", "!!\n\n", "\tOK", "  "],
    "smollm": ["Hello", " world", " ", *"1234567", " I", "'", "M", "!!", "\n\n", "\t", "OK", "  "],
    "gpt-4o": ["Hello", " world", " ", "123", "456", "7", " I'M", "!!\n\n", "\tOK", "  "],
}


@pytest.mark.parametrize("name", sorted(PRE_WORDS))
def test_pre_tokenizer_words(name):
    assert split_words(PRE_TOKENIZERS[name], PRE_TEXT) == PRE_WORDS[name]


@pytest.mark.parametrize("name", sorted(PRE_TOKENIZERS))
def test_every_pre_tokenizer_compiles_and_loses_nothing(name):
    text = SPLIT_TEXT + " " + PRE_TEXT + " can't 3.14159"
    words = split_words(PRE_TOKENIZERS[name], text)
    assert "".join(words) == text and len(words) > 1


@pytest.mark.parametrize("pre, digits", [("smollm", list("12345")), ("qwen2", list("12345")),
                                         ("llama-bpe", ["123", "45"])])
def test_pre_tokenizer_steers_real_vocab(meta, pre, digits):
    t = Tokenizer.from_metadata(_edit(meta[GPT2], Key.TOKENIZER_PRE, pre), pre)
    ids = t.encode("12345", add_bos=False)
    assert [t.decode([i]) for i in ids] == digits


# --- errors ------------------------------------------------------------------------------------------

def _merges_with(meta, index, merge):
    merges = list(meta[Key.MERGES.value])
    merges[index] = merge
    return _edit(meta, Key.MERGES, merges)


def _tokens_with(meta, index, text):
    tokens = list(meta[Key.TOKENS.value])
    tokens[index] = text
    return _edit(meta, Key.TOKENS, tokens)


ERRORS = [
    # (vocab, edit, field named in the message, another fragment of the message)
    ("missing-tokens", SPM, lambda m: _edit(m, Key.TOKENS, DROP), Key.TOKENS, "missing"),
    ("tokens-not-list", SPM, lambda m: _edit(m, Key.TOKENS, "abc"), Key.TOKENS, "list of strings"),
    ("unknown-model", SPM, lambda m: _edit(m, Key.TOKENIZER_MODEL, "bert"), Key.TOKENIZER_MODEL, "'bert'"),
    ("missing-model", GPT2, lambda m: _edit(m, Key.TOKENIZER_MODEL, DROP), Key.TOKENIZER_MODEL, "gpt2"),
    ("unknown-pre", GPT2, lambda m: _edit(m, Key.TOKENIZER_PRE, "nonesuch"), Key.TOKENIZER_PRE, "qwen2"),
    ("scores-length", SPM, lambda m: _edit(m, Key.SCORES, m[Key.SCORES.value][:-1]), Key.SCORES, "31999"),
    ("types-length", GPT2, lambda m: _edit(m, Key.TOKEN_TYPE, [*m[Key.TOKEN_TYPE.value], 1]), Key.TOKEN_TYPE,
     "50258"),
    ("merge-missing-token", GPT2, lambda m: _merges_with(m, 5, "Ġ zzqqzz"), Key.MERGES, "zzqqzz"),
    ("merge-no-space", GPT2, lambda m: _merges_with(m, 5, "abc"), Key.MERGES, "'abc'"),
    ("missing-merges", GPT2, lambda m: _edit(m, Key.MERGES, DROP), Key.MERGES, "missing"),
    ("duplicate-token", SPM, lambda m: _tokens_with(m, 500, m[Key.TOKENS.value][501]), Key.TOKENS, "duplicate"),
    ("bos-out-of-range", SPM, lambda m: _edit(m, Key.BOS_ID, 32000), Key.BOS_ID, "32000"),
    ("add-bos-without-bos", GPT2, lambda m: _edit(_edit(m, Key.BOS_ID, DROP), Key.ADD_BOS, True), Key.ADD_BOS,
     Key.BOS_ID.value),
    ("bad-byte-token", SPM, lambda m: _tokens_with(m, 3, "<0xZZ>"), Key.TOKENS, "<0xZZ>"),
]


@pytest.mark.parametrize("vocab, edit, field, fragment", [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_bad_metadata_raises(meta, vocab, edit, field, fragment):
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_metadata(edit(meta[vocab]), "bad.gguf")
    message = str(info.value)
    assert "bad.gguf" in message and field.value in message and fragment in message, message


def test_from_gguf(tmp_path):
    t = Tokenizer.from_gguf(VOCAB / _file(SPM))
    assert t.encode("Hello world") == [SPM_BOS, SPM_HELLO, 3186]
    with pytest.raises(ModelFileError, match="nothing.gguf"):
        Tokenizer.from_gguf(tmp_path / "nothing.gguf")
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("not a GGUF file at all")
    with pytest.raises(ModelFileError, match="text.gguf: not a GGUF file"):
        Tokenizer.from_gguf(not_gguf)


# --- metadata ----------------------------------------------------------------------------------------

def metadata_from_reader(reader: GGUFReader, source: str) -> dict[str, Any]:
    """gguf-py's view of the metadata as plain values: the reference for read_metadata."""
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        try:
            out[name] = field.contents()
        except UnicodeDecodeError:
            pytest.fail(f"{source}: gguf-py cannot decode field {name}")
    return out


@pytest.mark.parametrize("name", NAMES)
def test_read_metadata_equals_gguf_reader(meta, name):
    expected = metadata_from_reader(GGUFReader(VOCAB / _file(name)), _file(name))
    assert list(meta[name]) == list(expected)
    assert meta[name] == expected
    assert all(type(meta[name][k]) is type(v) for k, v in expected.items())


def test_metadata_gives_python_values(meta):
    m = meta[SPM]
    assert m[Key.TOKENIZER_MODEL.value] == "llama" and m["general.architecture"] == "llama"
    assert (m["GGUF.version"], m["GGUF.tensor_count"], m["GGUF.kv_count"]) == (3, 0, 22)
    tokens, scores, types = (m[k.value] for k in (Key.TOKENS, Key.SCORES, Key.TOKEN_TYPE))
    assert len(tokens) == len(scores) == len(types) == 32000
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and types[:4] == [2, 3, 3, 6]
    assert all(type(v) is str for v in tokens) and all(type(v) is float for v in scores)
    assert all(type(v) is int for v in types)
    assert m[Key.ADD_BOS.value] is True and type(m[Key.BOS_ID.value]) is int
    assert type(m["llama.attention.layer_norm_rms_epsilon"]) is float
    assert meta[GPT2][Key.MERGES.value][0] == "Ġ t"


def test_read_metadata_rejects_truncated_files(tmp_path):
    data = (VOCAB / _file(SPM)).read_bytes()
    for cut in (3, 30, len(data) // 2, len(data) - 1):
        short = tmp_path / f"cut{cut}.gguf"
        short.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=f"cut{cut}.gguf: .*truncated"):
            read_metadata(short)
    bad_version = tmp_path / "v9.gguf"
    bad_version.write_bytes(data[:4] + (9).to_bytes(4, "little") + data[8:])
    with pytest.raises(ModelFileError, match="v9.gguf: GGUF version 9"):
        read_metadata(bad_version)


# --- speed -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_encoding_10kb_is_fast(tok, name):
    text = ("".join(text for text, _ in _cases(name)) * 10)[:10_000]
    start = time.perf_counter()
    ids = tok[name].encode(text)
    elapsed = time.perf_counter() - start
    assert tok[name].decode(ids) == text
    assert elapsed < 1.0, f"{name}: encoding 10 kB took {elapsed:.2f} s"
