"""tokenizer.json -> GGUF tokenizer metadata: the two tiny tokenizers field by field, then the
pre-tokenizer table, added-token types, padding, and errors on synthetic tokenizer.json edits."""
from __future__ import annotations

import json
import shutil

import gguf
import pytest
from gguf import TokenType

from edgegen.converters.hf_tokenizer import LLAMA3_SPLIT, QWEN2_SPLIT, read_hf_tokenizer
from edgegen.errors import ConversionError

VOCAB = 512


def tokenizer_json(hf_dir) -> dict:
    return json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))


def edited(tiny_hf, tmp_path, edit, tokenizer="bpe"):
    """A copy of a tiny checkpoint whose tokenizer.json went through ``edit(dict)``."""
    hf = shutil.copytree(tiny_hf("llama", tokenizer), tmp_path / "hf")
    tok = tokenizer_json(hf)
    edit(tok)
    (hf / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    return hf


def test_byte_level_bpe_metadata(tiny_hf, tiny_gguf):
    hf = tiny_hf("llama", "bpe")
    tok = tokenizer_json(hf)
    meta = read_hf_tokenizer(hf, VOCAB)
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    assert meta.model == "gpt2" and meta.pre == "gpt-2" and meta.scores is None
    assert list(meta.tokens) == [by_id[i] for i in range(VOCAB)]
    assert meta.tokens[:3] == ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    assert meta.token_types == (TokenType.CONTROL,) * 3 + (TokenType.NORMAL,) * (VOCAB - 3)
    assert list(meta.merges) == [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
    assert meta.special_ids == {"bos": 0, "eos": 0, "pad": 0}
    assert (meta.add_bos, meta.add_eos, meta.add_space_prefix) == (False, False, None)
    assert meta.chat_template.startswith("{% for message in messages %}")
    # and the same values come back out of the converted file
    fields = gguf.GGUFReader(tiny_gguf("llama", "f32", "bpe")).fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.tokens"].contents() == list(meta.tokens)
    assert fields["tokenizer.ggml.merges"].contents() == list(meta.merges)
    assert fields["tokenizer.chat_template"].contents() == meta.chat_template
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False


def test_sentencepiece_style_metadata(tiny_hf, tiny_gguf):
    hf = tiny_hf("llama", "spm")
    tok = tokenizer_json(hf)
    meta = read_hf_tokenizer(hf, VOCAB)
    assert meta.model == "llama" and meta.pre == "default" and meta.merges is None
    assert meta.tokens[:4] == ("<unk>", "<s>", "</s>", "<0x00>") and meta.tokens[258] == "<0xFF>"
    assert meta.token_types[:3] == (TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL)
    assert set(meta.token_types[3:259]) == {TokenType.BYTE} and set(meta.token_types[259:]) == {TokenType.NORMAL}
    assert meta.special_ids == {"bos": 1, "eos": 2, "unk": 0}
    assert (meta.add_bos, meta.add_eos, meta.add_space_prefix) == (True, False, True)
    # scores: the token made by merge rank r scores -r; every other token scores below all of them
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in tok["model"]["merges"]]
    index = {t: i for i, t in enumerate(meta.tokens)}
    for rank, (a, b) in enumerate(merges):
        assert meta.scores[index[a + b]] == -rank
    made = {index[a + b] for a, b in merges}
    assert max(s for i, s in enumerate(meta.scores) if i not in made) < -(len(merges) - 1)
    fields = gguf.GGUFReader(tiny_gguf("llama", "f32", "spm")).fields
    assert fields["tokenizer.ggml.scores"].contents() == pytest.approx(list(meta.scores))
    assert fields["tokenizer.ggml.add_space_prefix"].contents() is True


@pytest.mark.parametrize("pre_tokenizer,name", [
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
     "smollm"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}, "llama-bpe"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}, "qwen2"),
])
def test_pre_tokenizer_is_recognised(tiny_hf, tmp_path, pre_tokenizer, name):
    hf = edited(tiny_hf, tmp_path, lambda tok: tok.update(pre_tokenizer=pre_tokenizer))
    assert read_hf_tokenizer(hf, VOCAB).pre == name


def test_llama3_regex_is_the_one_in_llama3_tokenizer_json():
    # tokenizer.json stores the regex JSON-escaped; this is Meta-Llama-3's pattern as it appears there.
    stored = ('"(?i:\'s|\'t|\'re|\'ve|\'m|\'ll|\'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?'
              '[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"')
    assert json.loads(stored) == LLAMA3_SPLIT
    assert QWEN2_SPLIT == LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")


@pytest.mark.parametrize("edit,message", [
    (lambda tok: tok.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Whitespace"}, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}),
     r"tokenizer\.json: pre_tokenizer .*Whitespace.* matches none"),
    (lambda tok: tok["pre_tokenizer"].update(add_prefix_space=True), "add_prefix_space"),
    (lambda tok: tok["model"].update(type="Unigram"), r"model\.type is 'Unigram'"),
    (lambda tok: tok["model"]["vocab"].update({"extra": VOCAB + 5}), r"id 517, outside the model's vocabulary of 512"),
    (lambda tok: tok.update(normalizer={"type": "Lowercase"}), "normalizer"),
])
def test_tokenizer_errors_name_the_field(tiny_hf, tmp_path, edit, message):
    with pytest.raises(ConversionError, match=message):
        read_hf_tokenizer(edited(tiny_hf, tmp_path, edit), VOCAB)


def test_spm_without_space_handling_is_rejected(tiny_hf, tmp_path):
    hf = edited(tiny_hf, tmp_path, lambda tok: tok.update(normalizer=None), tokenizer="spm")
    with pytest.raises(ConversionError, match="SentencePiece-style"):
        read_hf_tokenizer(hf, VOCAB)


def test_added_tokens_and_padding(tiny_hf, tmp_path):
    def add(tok):
        tok["added_tokens"].append({"id": VOCAB, "content": "<|tool|>", "special": False, "normalized": False,
                                    "lstrip": False, "rstrip": False, "single_word": False})
        tok["added_tokens"].append({"id": VOCAB + 1, "content": "hello world", "special": False, "normalized": True,
                                    "lstrip": False, "rstrip": False, "single_word": False})
    meta = read_hf_tokenizer(edited(tiny_hf, tmp_path, add), VOCAB + 4)
    assert meta.tokens[VOCAB:] == ("<|tool|>", "hello world", f"[PAD{VOCAB + 2}]", f"[PAD{VOCAB + 3}]")
    assert meta.token_types[VOCAB:] == (TokenType.CONTROL, TokenType.USER_DEFINED,
                                        TokenType.USER_DEFINED, TokenType.USER_DEFINED)


def test_special_token_ids_come_from_tokenizer_config_then_config(tiny_hf, tmp_path):
    hf = shutil.copytree(tiny_hf("llama", "spm"), tmp_path / "hf")
    tcfg = json.loads((hf / "tokenizer_config.json").read_text())
    tcfg["add_bos_token"], tcfg["add_eos_token"] = False, True
    tcfg["pad_token"] = {"content": "</s>"}
    del tcfg["bos_token"]
    (hf / "tokenizer_config.json").write_text(json.dumps(tcfg))
    meta = read_hf_tokenizer(hf, VOCAB)
    assert meta.special_ids == {"bos": 1, "eos": 2, "unk": 0, "pad": 2}   # bos from config.json's bos_token_id
    assert (meta.add_bos, meta.add_eos) == (False, True)
    tcfg["eos_token"] = "<nope>"
    (hf / "tokenizer_config.json").write_text(json.dumps(tcfg))
    with pytest.raises(ConversionError, match=r"tokenizer_config\.json: field 'eos_token' is '<nope>'"):
        read_hf_tokenizer(hf, VOCAB)
