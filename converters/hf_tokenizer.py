"""tokenizer.json (+ tokenizer_config.json, config.json) -> GGUF ``tokenizer.*`` metadata.

Two tokenizer families are recognised from the structure of tokenizer.json, never from names:

- byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM): ``tokenizer.ggml.model = "gpt2"``, tokens in
  GPT-2's byte alphabet, the merges, and ``tokenizer.ggml.pre`` naming the pre-tokenizer, found
  by matching the pre_tokenizer section against ``PRE_TOKENIZERS``;
- SentencePiece-style BPE with byte fallback and "▁" for spaces (Llama 2, Mistral, TinyLlama):
  ``tokenizer.ggml.model = "llama"`` with scores, <0xXX> byte tokens and a space prefix.

llama.cpp runs the "llama" model as SentencePiece does: it repeatedly merges the adjacent pair
whose concatenation is the token of highest score. tokenizer.json has merge ranks, not scores,
so the token made by merge rank r scores -r (earlier merges first); tokens no merge makes score
below every merged token. (llama.cpp's own converter gives every token -1000 when it has only
tokenizer.json, which makes its merge order depend on position instead of rank.)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFWriter, TokenType

from edgegen.constants import Key
from edgegen.errors import ConversionError

from .hf_checkpoint import CONFIG_FILE, read_json

__all__ = ["TokenizerMetadata", "read_hf_tokenizer", "PRE_TOKENIZERS"]

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
GPT2, SPM = "gpt2", "llama"
SPM_PRE = "default"
SPACE_MARK = "\u2581"  # "▁", SentencePiece's visible space
BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
SPECIAL_KINDS = ("bos", "eos", "unk", "pad")

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Canonical pre-tokenizer steps (see _pre_steps) -> tokenizer.ggml.pre, as llama.cpp names them.
PRE_TOKENIZERS: dict[tuple[tuple, ...], str] = {
    (("ByteLevel", True),): "gpt-2",
    (("Digits", True), ("ByteLevel", True)): "smollm",
    (("Split", LLAMA3_SPLIT), ("ByteLevel", False)): "llama-bpe",
    (("Split", QWEN2_SPLIT), ("ByteLevel", False)): "qwen2",
}
# Normalizers llama.cpp's byte-level tokenizers can ignore (NFC changes nothing on NFC text).
_BYTE_LEVEL_NORMALIZERS = (None, "NFC")


@dataclass(frozen=True)
class TokenizerMetadata:
    """Everything the GGUF ``tokenizer.*`` keys hold; ``write`` puts it in a GGUFWriter."""
    model: str
    pre: str
    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    scores: tuple[float, ...] | None
    merges: tuple[str, ...] | None
    special_ids: dict[str, int]            # "bos"/"eos"/"unk"/"pad" -> id, only those known
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None          # SPM only
    chat_template: str | None

    def write(self, writer: GGUFWriter) -> None:
        writer.add_string(Key.TOKENIZER_MODEL.value, self.model)
        writer.add_string(Key.TOKENIZER_PRE.value, self.pre)
        writer.add_array(Key.TOKENS.value, list(self.tokens))
        writer.add_array(Key.TOKEN_TYPE.value, list(self.token_types))
        if self.scores is not None:
            writer.add_array(Key.SCORES.value, list(self.scores))
        if self.merges is not None:
            writer.add_array(Key.MERGES.value, list(self.merges))
        keys = {"bos": Key.BOS_ID, "eos": Key.EOS_ID, "unk": Key.UNK_ID, "pad": Key.PAD_ID}
        for kind, token_id in self.special_ids.items():
            writer.add_uint32(keys[kind].value, token_id)
        writer.add_bool(Key.ADD_BOS.value, self.add_bos)
        writer.add_bool(Key.ADD_EOS.value, self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_bool(Key.ADD_SPACE_PREFIX.value, self.add_space_prefix)
        if self.chat_template is not None:
            writer.add_string(Key.CHAT_TEMPLATE.value, self.chat_template)


def _steps(section: dict | None) -> list[dict]:
    """A normalizer / pre_tokenizer / decoder section as a flat list of steps."""
    if section is None:
        return []
    if section.get("type") == "Sequence":
        key = "pretokenizers" if "pretokenizers" in section else "normalizers" if "normalizers" in section \
            else "decoders" if "decoders" in section else "processors"
        return [step for sub in section.get(key, []) for step in _steps(sub)]
    return [section]


def _pre_steps(pre: dict | None, path: Path) -> tuple[tuple, ...]:
    """The pre_tokenizer reduced to what decides how text is split, e.g. (("ByteLevel", True),)."""
    out: list[tuple] = []
    for step in _steps(pre):
        kind = step.get("type")
        if kind == "ByteLevel":
            if step.get("add_prefix_space", False):
                raise ConversionError(f"{path}: pre_tokenizer ByteLevel has add_prefix_space=true, which "
                                      "llama.cpp's byte-level tokenizers do not implement")
            out.append(("ByteLevel", bool(step.get("use_regex", True))))
        elif kind == "Digits":
            out.append(("Digits", bool(step.get("individual_digits", False))))
        elif kind == "Split" and step.get("behavior") == "Isolated" and not step.get("invert", False):
            out.append(("Split", (step.get("pattern") or {}).get("Regex")))
        else:
            out.append((kind, json.dumps(step, sort_keys=True)))
    return tuple(out)


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _id_table(tok: dict, path: Path, n_vocab: int) -> tuple[list[str | None], dict[int, dict]]:
    """id -> token text for ids < n_vocab (None where the tokenizer has no token), and added tokens by id."""
    vocab = tok["model"].get("vocab")
    if not isinstance(vocab, dict):
        raise ConversionError(f"{path}: model.vocab should be an object of token -> id")
    table: list[str | None] = [None] * n_vocab
    added = {entry["id"]: entry for entry in tok.get("added_tokens") or []}
    for text, token_id in [*vocab.items(), *((e["content"], i) for i, e in added.items())]:
        if not isinstance(token_id, int) or not 0 <= token_id < n_vocab:
            raise ConversionError(f"{path}: token {text!r} has id {token_id!r}, outside the model's "
                                  f"vocabulary of {n_vocab} (config.json vocab_size)")
        if table[token_id] not in (None, text):
            raise ConversionError(f"{path}: id {token_id} names both {table[token_id]!r} and {text!r}")
        table[token_id] = text
    return table, added


def _merge_pairs(tok: dict, path: Path) -> list[tuple[str, str]]:
    pairs = []
    for rank, merge in enumerate(tok["model"].get("merges") or []):
        if isinstance(merge, str) and merge.count(" ") == 1:
            left, right = merge.split(" ")
        elif isinstance(merge, list) and len(merge) == 2 and " " not in merge[0] + merge[1]:
            left, right = merge
        else:
            raise ConversionError(f"{path}: model.merges entry {rank} {merge!r} is not two space-free tokens")
        pairs.append((left, right))
    return pairs


def _looks_special(text: str) -> bool:
    return text.startswith("<|") and text.endswith("|>")


def _special_ids(hf_dir: Path, tcfg: dict, table: list[str | None], tok: dict) -> dict[str, int]:
    """bos/eos/unk/pad ids: tokenizer_config.json's tokens, else config.json's *_token_id."""
    ids = {text: i for i, text in enumerate(table) if text is not None}
    cfg_path = hf_dir / CONFIG_FILE
    cfg = read_json(cfg_path)
    found: dict[str, int] = {}
    for kind in SPECIAL_KINDS:
        content = _token_content(tcfg.get(f"{kind}_token"))
        if kind == "unk" and content is None:
            content = tok["model"].get("unk_token")
        if content is not None:
            if content not in ids:
                raise ConversionError(f"{hf_dir / TOKENIZER_CONFIG_FILE}: field '{kind}_token' is {content!r}, "
                                      f"which is not a token of {TOKENIZER_FILE}")
            found[kind] = ids[content]
            continue
        value = cfg.get(f"{kind}_token_id")
        value = value[0] if isinstance(value, list) and value else value
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(table):
                raise ConversionError(f"{cfg_path}: field '{kind}_token_id' is {value}, outside the vocabulary")
            found[kind] = value
    return found


def _template_adds(tok: dict) -> tuple[bool | None, bool | None]:
    """(add_bos, add_eos) implied by a TemplateProcessing post-processor, or None if there is none."""
    for step in _steps(tok.get("post_processor")):
        if step.get("type") == "TemplateProcessing":
            single = step.get("single") or []
            starts = bool(single) and "SpecialToken" in single[0]
            ends = bool(single) and "SpecialToken" in single[-1]
            return starts, ends
    return None, None


def _chat_template(hf_dir: Path, tcfg: dict) -> str | None:
    template = tcfg.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is None and (hf_dir / CHAT_TEMPLATE_FILE).exists():
        template = (hf_dir / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    return template if isinstance(template, str) else None


def _spm_space_prefix(tok: dict, path: Path) -> bool:
    """Whether the SPM-style tokenizer prepends "▁"; ConversionError if spaces are not mapped to "▁"."""
    norm = _steps(tok.get("normalizer"))
    pre = _steps(tok.get("pre_tokenizer"))
    replaces_space = any(s.get("type") == "Replace" and (s.get("pattern") or {}).get("String") == " "
                         and s.get("content") == SPACE_MARK for s in norm)
    metaspace = [s for s in pre if s.get("type") == "Metaspace"]
    if not replaces_space and not metaspace:
        raise ConversionError(f"{path}: byte-fallback BPE without a normalizer Replace(' ' -> '{SPACE_MARK}') "
                              "or a Metaspace pre_tokenizer is not a SentencePiece-style tokenizer")
    if any(s.get("type") == "Prepend" and s.get("prepend") == SPACE_MARK for s in norm):
        return True
    return any(s.get("prepend_scheme", "always") in ("always", "first") and s.get("add_prefix_space", True)
               for s in metaspace)


def _spm_scores(table: list[str | None], merges: list[tuple[str, str]]) -> list[float]:
    """Score -r for the token merge rank r makes; lower still for tokens no merge makes."""
    rank_of: dict[str, int] = {}
    for rank, (left, right) in enumerate(merges):
        rank_of.setdefault(left + right, rank)
    scores, unmerged = [], len(merges)
    for text in table:
        if text is not None and text in rank_of:
            scores.append(-float(rank_of[text]))
        else:
            scores.append(-float(unmerged))
            unmerged += 1
    return scores


def read_hf_tokenizer(hf_dir: Path, n_vocab: int) -> TokenizerMetadata:
    """GGUF tokenizer metadata for the model in ``hf_dir`` whose embedding has ``n_vocab`` rows."""
    path = hf_dir / TOKENIZER_FILE
    tok = read_json(path)
    tcfg_path = hf_dir / TOKENIZER_CONFIG_FILE
    tcfg = read_json(tcfg_path) if tcfg_path.exists() else {}
    model = tok.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        found = model.get("type") if isinstance(model, dict) else model
        raise ConversionError(f"{path}: model.type is {found!r}; only BPE tokenizers are supported")
    table, added = _id_table(tok, path, n_vocab)
    merges = _merge_pairs(tok, path)
    byte_level = any(s.get("type") == "ByteLevel" for s in _steps(tok.get("pre_tokenizer")))
    if byte_level:
        family = GPT2
        steps = _pre_steps(tok.get("pre_tokenizer"), path)
        if steps not in PRE_TOKENIZERS:
            raise ConversionError(f"{path}: pre_tokenizer {tok.get('pre_tokenizer')!r} matches none of the "
                                  f"known pre-tokenizers ({', '.join(PRE_TOKENIZERS.values())})")
        normalizer = (tok.get("normalizer") or {}).get("type")
        if normalizer not in _BYTE_LEVEL_NORMALIZERS:
            raise ConversionError(f"{path}: normalizer {tok.get('normalizer')!r} is not supported with a "
                                  "byte-level pre_tokenizer")
        pre, space_prefix, scores = PRE_TOKENIZERS[steps], None, None
    elif model.get("byte_fallback"):
        family, pre = SPM, SPM_PRE
        space_prefix = _spm_space_prefix(tok, path)
        scores = tuple(_spm_scores(table, merges))
    else:
        raise ConversionError(f"{path}: a BPE tokenizer needs a ByteLevel pre_tokenizer or model.byte_fallback=true")

    specials = _special_ids(hf_dir, tcfg, table, tok)
    types = []
    for token_id, text in enumerate(table):
        entry = added.get(token_id)
        if text is None:
            types.append(TokenType.USER_DEFINED)
        elif family == SPM and specials.get("unk") == token_id:
            types.append(TokenType.UNKNOWN)
        elif entry is not None:
            control = entry.get("special", False) or _looks_special(text)
            types.append(TokenType.CONTROL if control else TokenType.USER_DEFINED)
        elif family == SPM and BYTE_TOKEN.match(text):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    tokens = tuple(text if text is not None else f"[PAD{i}]" for i, text in enumerate(table))

    template_bos, template_eos = _template_adds(tok)
    add_bos = tcfg.get("add_bos_token", template_bos if template_bos is not None else family == SPM)
    add_eos = tcfg.get("add_eos_token", template_eos if template_eos is not None else False)
    if add_bos and "bos" not in specials:
        raise ConversionError(f"{tcfg_path}: the tokenizer adds a BOS token but names no bos_token")
    return TokenizerMetadata(
        model=family, pre=pre, tokens=tokens, token_types=tuple(int(t) for t in types), scores=scores,
        merges=tuple(f"{a} {b}" for a, b in merges) if family == GPT2 else None,
        special_ids=specials, add_bos=bool(add_bos), add_eos=bool(add_eos),
        add_space_prefix=space_prefix, chat_template=_chat_template(hf_dir, tcfg),
    )
