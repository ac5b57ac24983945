"""edgegen's tokenizer against llama.cpp's on SmolLM2's vocabulary (GPT-2 style byte-level BPE,
pre-tokenizer 'smollm'), over a page of mixed text: prose, code, numbers, accents, CJK, emoji,
whitespace runs, contractions and the text of special tokens."""
from __future__ import annotations

from pathlib import Path

import pytest

TEXT = (Path(__file__).parents[1] / "data" / "mixed_text.txt").read_text(encoding="utf-8")
PIECES = [TEXT] + TEXT.splitlines(keepends=True)


@pytest.fixture(scope="module")
def vocab(reference, smollm2_path):
    return reference.open_vocab(smollm2_path)


def test_page_covers_the_awkward_cases():
    for sample in ("<|im_start|>", "😀", "日本語", "naïve", "    ", "\t\t", "\n\n\n", "won't", "1234"):
        assert sample in TEXT, sample


@pytest.mark.parametrize("parse_special", [False, True])
def test_ids_equal_llama_cpp(smollm2, vocab, parse_special):
    tok = smollm2.tokenizer
    assert tok.add_bos is False   # so add_bos=False below is what both engines do by default
    for text in PIECES:
        ours = tok.encode(text, parse_special=parse_special)
        theirs = vocab.tokenize(text.encode(), add_bos=False, special=parse_special)
        assert ours == theirs, repr(text)


def test_special_token_text_becomes_control_tokens_only_when_asked(smollm2):
    tok = smollm2.tokenizer
    assert tok.encode("<|im_start|>user", parse_special=True)[0] == 1
    assert 1 not in tok.encode("<|im_start|>user", parse_special=False)


def test_decode_encode_round_trip(smollm2):
    tok = smollm2.tokenizer
    for text in PIECES:
        assert tok.decode(tok.encode(text)) == text


def test_decode_equals_llama_cpp(smollm2, vocab):
    tok = smollm2.tokenizer
    for text in PIECES:
        ids = tok.encode(text)
        assert tok.decode(ids).encode() == vocab.detokenize(ids)
    # with special tokens parsed, both engines leave the control tokens out of the text the same way
    ids = tok.encode(TEXT, parse_special=True)
    assert tok.decode(ids).encode() == vocab.detokenize(ids)
