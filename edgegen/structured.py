"""Output constrained to a JSON schema, a regex or a Lark grammar: which tokens may come next.

    c = Constraint.json_schema({"type": "object", ...}, tokenizer)   # one per generation
    while not c.done:
        logits[~c.allowed()] = -inf
        tok = sample(logits, ...)
        c.advance(tok)                                                # GrammarError if not allowed
        if tok in tokenizer.eot_ids: break

The matching is llguidance's (github.com/guidance-ai/llguidance), chosen because it is maintained
by Microsoft and is what llama.cpp and vLLM use; its Rust core computes a token mask in tens of
microseconds; it takes JSON schema, regex and Lark grammars; and it works from a plain list of
token byte strings, so it needs no Hugging Face tokenizer object: edgegen's own Tokenizer feeds it.

How the vocabulary is handed over (``_ll_tokenizer``, built once per Tokenizer and cached):
- each token as the bytes it adds to the text (``Tokenizer.token_bytes``);
- tokens that add no bytes (control, unknown, unused: ``<|im_start|>``, ``</s>``) are marked
  special, under their own names, so llguidance never allows them inside the output (a Lark
  grammar may still name one, e.g. ``<|im_end|>``);
- the end-of-text ids (``Tokenizer.eot_ids``) are llguidance's EOS tokens: allowed exactly when the
  output is complete, and the only tokens allowed once it cannot grow any further.

Schemas are checked by llguidance itself, not by the ``jsonschema`` package: it rejects invalid
schemas (``{"type": "nonsense"}``, a dangling ``$ref``) and keywords it cannot enforce, and its
message becomes a GrammarError naming the schema. llguidance options (e.g. ``"whitespace_flexible":
false`` for compact JSON) go in the schema's ``"x-guidance"`` key, as llguidance documents.
"""
from __future__ import annotations

import json
import threading
import weakref
from typing import Any

import numpy as np

from edgegen.errors import GrammarError, MissingDependencyError
from edgegen.tokenizer import Tokenizer

__all__ = ["Constraint"]

_INSTALL = "pip install 'llguidance>=1.9,<2'"
_LOG_SILENT = 0                      # llguidance log level: errors come back through get_error(), not stderr

_ll_cache: "weakref.WeakKeyDictionary[Tokenizer, Any]" = weakref.WeakKeyDictionary()
_ll_lock = threading.Lock()


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise MissingDependencyError(f"constrained output needs llguidance: {_INSTALL}") from None
    return llguidance


class _Vocab:
    """What llguidance.TokenizerWrapper reads: token bytes, special ids, EOS / BOS, and a way to encode."""

    def __init__(self, tokenizer: Tokenizer):
        names = tokenizer._vocab.tokens                  # only to name special tokens
        pieces = [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
        self.special_token_ids = [i for i, piece in enumerate(pieces) if not piece]
        self.tokens = [piece or names[i].encode() for i, piece in enumerate(pieces)]
        eot = sorted(tokenizer.eot_ids)
        self.eos_token_id = tokenizer.eos_id if tokenizer.eos_id is not None else eot[0]
        self.bos_token_id = tokenizer.bos_id
        # Weak: the LLTokenizer keeps this object, and is itself the cache's value for ``tokenizer``;
        # a strong reference would keep the cache entry alive for ever. Each Constraint holds the
        # Tokenizer, so it outlives every use of this callback.
        self._tokenizer = weakref.ref(tokenizer)

    def __call__(self, text: bytes) -> list[int]:
        tokenizer = self._tokenizer()
        assert tokenizer is not None, "llguidance tokenized after the edgegen Tokenizer was freed"
        # llguidance passes valid UTF-8 (it tokenizes the tail itself); "replace" only guards misuse.
        return tokenizer.encode(text.decode("utf-8", errors="replace"), add_bos=False)


def _ll_tokenizer(tokenizer: Tokenizer) -> Any:
    """The llguidance.LLTokenizer of ``tokenizer``, built on first use and kept while it lives."""
    with _ll_lock:
        cached = _ll_cache.get(tokenizer)
        if cached is not None:
            return cached
        if not tokenizer.eot_ids:
            raise GrammarError("tokenizer: constrained output needs an end-of-text token, and this vocabulary "
                               "has none (no tokenizer.ggml.eos_token_id, no end-of-turn token)")
        llg = _llguidance()
        built = llg.LLTokenizer(llg.TokenizerWrapper(_Vocab(tokenizer)), n_vocab=tokenizer.vocab_size,
                                eos_token=sorted(tokenizer.eot_ids))
        assert built.vocab_size == tokenizer.vocab_size, (built.vocab_size, tokenizer.vocab_size)
        _ll_cache[tokenizer] = built
        return built


def _short(error: str) -> str:
    """llguidance's message without its multi-line state dump: the first line and any 'error:' lines."""
    lines = [line.strip() for line in error.strip().splitlines()]
    keep = lines[:1] + [line for line in lines[1:] if line.startswith("error:")]
    return " ".join(keep)


# How generated JSON is laid out (llguidance JsonCompileOptions), see Constraint.json_schema.
JSON_LAYOUT = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


class Constraint:
    """Which tokens may come next so that the output matches a schema, regex or grammar.

    One per generation: it holds the parse state, and is not shared between threads. Build it
    with ``json_schema``, ``regex`` or ``grammar``."""

    def __init__(self, matcher: Any, tokenizer: Tokenizer, what: str):
        self._matcher = matcher
        self._tokenizer = tokenizer                                 # keeps the cached LLTokenizer usable
        self._ll = _ll_tokenizer(tokenizer)
        self._what = what
        self._n_vocab = tokenizer.vocab_size
        self._eot = np.zeros(self._n_vocab, dtype=bool)            # [vocab_size]
        self._eot[sorted(tokenizer.eot_ids)] = True
        self._n_tokens = 0
        self._bits: bytes | None = None                             # packed mask of the current state

    @classmethod
    def _build(cls, grammar: str, tokenizer: Tokenizer, what: str) -> "Constraint":
        llg = _llguidance()
        matcher = llg.LLMatcher(_ll_tokenizer(tokenizer), grammar, log_level=_LOG_SILENT)
        if matcher.is_error():
            raise GrammarError(f"{what}: {_short(matcher.get_error())}")
        return cls(matcher, tokenizer, what)

    # JSON_LAYOUT: one space after "," and ":", no other whitespace, unless the schema's
    # "x-guidance" says otherwise: with llguidance's default (any run of whitespace anywhere) a
    # small model can pad forever and never close the object.
    @classmethod
    def json_schema(cls, schema: dict | str, tokenizer: Tokenizer) -> "Constraint":
        """Output is one JSON value valid under ``schema`` (a dict, or its JSON text)."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as e:
                raise GrammarError(f"schema: not valid JSON: {e}") from None
        if not isinstance(schema, dict):
            raise GrammarError(f"schema: expected a JSON object, found {type(schema).__name__}")
        try:
            grammar = _llguidance().LLMatcher.grammar_from_json_schema(schema, defaults=JSON_LAYOUT)
        except (ValueError, TypeError) as e:                      # not serializable as JSON
            raise GrammarError(f"schema: {e}") from None
        return cls._build(grammar, tokenizer, "schema")

    @classmethod
    def regex(cls, pattern: str, tokenizer: Tokenizer) -> "Constraint":
        """Output matches ``pattern`` as a whole (Rust regex syntax, as Python's ``re.fullmatch``)."""
        if not isinstance(pattern, str):
            raise GrammarError(f"regex: expected a string, found {type(pattern).__name__}")
        return cls._build(_llguidance().LLMatcher.grammar_from_regex(pattern), tokenizer, f"regex {pattern!r}")

    @classmethod
    def grammar(cls, lark: str, tokenizer: Tokenizer) -> "Constraint":
        """Output is a sentence of a Lark grammar (llguidance's dialect; ``start`` is the start rule)."""
        if not isinstance(lark, str):
            raise GrammarError(f"grammar: expected a Lark grammar string, found {type(lark).__name__}")
        return cls._build(_llguidance().LLMatcher.grammar_from_lark(lark), tokenizer, "grammar")

    @property
    def done(self) -> bool:
        """The output is complete: an end-of-text token was accepted, or nothing more can follow."""
        return self._matcher.is_stopped()

    def _mask_bits(self) -> bytes:
        """The packed mask of the current state (bit i of byte i // 8: token i), computed once per state."""
        if self._bits is None:
            bits = self._matcher.compute_bitmask()
            if self._matcher.is_error():      # a parser resource limit hit while computing the mask
                raise GrammarError(f"{self._what}: {_short(self._matcher.get_error())}")
            self._bits = bits
        return self._bits

    def allowed(self) -> np.ndarray:
        """Bool mask [vocab_size]: True for the tokens that may be sampled next. Once the output is
        complete only the end-of-text ids are allowed."""
        if self.done:
            return self._eot.copy()
        bits = np.frombuffer(self._mask_bits(), dtype=np.uint8)
        return np.unpackbits(bits, count=self._n_vocab, bitorder="little").view(bool)

    def advance(self, token_id: int) -> None:
        """Accept the token that was sampled. A token that is not allowed raises GrammarError and
        leaves the state as it was, so the caller may pick another."""
        if not isinstance(token_id, (int, np.integer)) or not 0 <= token_id < self._n_vocab:
            raise GrammarError(f"token id {token_id!r} is out of range [0, {self._n_vocab})")
        token_id = int(token_id)
        if self.done and self._eot[token_id]:
            return
        # Checked against the mask, not llguidance's validate_tokens: that one refuses an end-of-text
        # token which a grammar names as a lexeme (start: "ok" <|im_end|>) although the mask allows it.
        if not (self._mask_bits()[token_id >> 3] >> (token_id & 7)) & 1:
            raise GrammarError(f"token {token_id} {self._ll.dbg_tokens([token_id])} is not allowed by the "
                               f"{self._what} after {self._n_tokens} tokens; choose one that allowed() marks True")
        if not self._matcher.consume_token(token_id):
            raise GrammarError(f"{self._what}: {_short(self._matcher.get_error())}")
        self._bits = None
        self._n_tokens += 1
