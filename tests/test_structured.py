"""Constrained output with the bundled model's tokenizer and a simulated model (seeded random
logits, no forward pass): every sampled output parses and validates, for 50 seeds per case."""
from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest

from demo_model import demo_model
from edgegen.errors import GrammarError
from edgegen.structured import Constraint, _ll_tokenizer
from edgegen.tokenizer import Tokenizer

llguidance = pytest.importorskip("llguidance", reason="constrained output needs llguidance (a base dependency)")
jsonschema = pytest.importorskip("jsonschema", reason="validating sampled JSON needs jsonschema: pip install -e '.[test]'")

SEEDS = range(50)
MAX_TOKENS = 400
_mask_seconds: list[float] = []          # every allowed() call timed in this module, for the report

COMPACT = {"whitespace_flexible": False}  # llguidance option: no free whitespace between JSON tokens

SCHEMAS = {
    "flat": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "color": {"enum": ["red", "green", "blue"]},
            "ok": {"type": "boolean"},
        },
        "required": ["name", "age", "color", "ok"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": -50, "maximum": 50},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 4},
                     "minItems": 1, "maxItems": 3},
            "owner": {
                "type": "object",
                "properties": {"login": {"type": "string", "pattern": "^[a-z]{2,6}$"},
                               "level": {"enum": [1, 2, 3, None]}},
                "required": ["login", "level"],
                "additionalProperties": False,
            },
        },
        "required": ["id", "tags", "owner"],
        "additionalProperties": False,
        "x-guidance": COMPACT,
    },
    "array_of_objects": {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": "string", "maxLength": 3},
                                                   "v": {"type": "integer", "minimum": 0, "maximum": 9}},
                  "required": ["k", "v"], "additionalProperties": False},
        "minItems": 1,
        "maxItems": 3,
        "x-guidance": COMPACT,
    },
}

REGEXES = [r"[a-z]{1,8}@[a-z]{2,6}\.(com|org|net)", r"-?[0-9]{1,4}(\.[0-9]{1,3})?", r"(yes|no|maybe)!{0,3}"]

GREETING_LARK = r"""
start: greeting " " name ("," " " name){0,2} "!"
greeting: "hello" | "hi" | "good day"
name: /[A-Z][a-z]{1,6}/
"""
GREETING_RE = r"(hello|hi|good day) [A-Z][a-z]{1,6}(, [A-Z][a-z]{1,6}){0,2}!"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_gguf(demo_model())


def _sample(c: Constraint, tok: Tokenizer, seed: int, check_prefix=None) -> tuple[bytes, bool]:
    """Simulated generation: seeded N(0,1) logits, masked by allowed(), sampled from the softmax.
    Returns (output bytes, stopped by end-of-text/done). ``check_prefix(text)`` runs whenever an
    end-of-text token is allowed: the text so far must then be a complete, valid output."""
    rng = np.random.default_rng(seed)
    eot = sorted(tok.eot_ids)
    out: list[int] = []
    for _ in range(MAX_TOKENS):
        if c.done:
            return b"".join(tok.token_bytes(t) for t in out), True
        t0 = time.perf_counter()
        mask = c.allowed()
        _mask_seconds.append(time.perf_counter() - t0)
        assert mask.dtype == bool and mask.shape == (tok.vocab_size,) and mask.any()
        text = b"".join(tok.token_bytes(t) for t in out)
        if mask[eot].any() and check_prefix is not None:
            check_prefix(text)
        logits = rng.normal(size=tok.vocab_size)
        logits[~mask] = -np.inf
        p = np.exp(logits - logits.max())
        token = int(rng.choice(tok.vocab_size, p=p / p.sum()))
        c.advance(token)
        if token in tok.eot_ids:
            return text, True
        out.append(token)
    return b"".join(tok.token_bytes(t) for t in out), False


def _special_ids(tok: Tokenizer) -> list[int]:
    return [i for i in range(tok.vocab_size) if tok.token_bytes(i) == b""]


# --- sampled outputs are valid ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_schema_outputs_validate(tok, name):
    schema = SCHEMAS[name]
    validate = lambda b: jsonschema.validate(json.loads(b.decode()), schema)  # noqa: E731
    outputs = set()
    for seed in SEEDS:
        text, stopped = _sample(Constraint.json_schema(schema, tok), tok, seed, check_prefix=validate)
        assert stopped, f"seed {seed}: no end after {MAX_TOKENS} tokens: {text[:80]!r}"
        validate(text)
        outputs.add(text)
    assert len(outputs) > 40        # the random model really explores the schema


def test_json_schema_given_as_text(tok):
    text, stopped = _sample(Constraint.json_schema(json.dumps(SCHEMAS["flat"]), tok), tok, seed=7)
    assert stopped
    jsonschema.validate(json.loads(text), SCHEMAS["flat"])


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_outputs_fullmatch(tok, pattern):
    outputs = set()
    for seed in SEEDS:
        text, stopped = _sample(Constraint.regex(pattern, tok), tok, seed,
                                check_prefix=lambda b: re.fullmatch(pattern, b.decode()) or pytest.fail(b))
        assert stopped and re.fullmatch(pattern, text.decode()), (seed, text)
        outputs.add(text)
    assert len(outputs) > 10


def test_lark_grammar_outputs_match(tok):
    outputs = set()
    for seed in SEEDS:
        text, stopped = _sample(Constraint.grammar(GREETING_LARK, tok), tok, seed)
        assert stopped and re.fullmatch(GREETING_RE, text.decode()), (seed, text)
        outputs.add(text)
    assert len(outputs) > 40


# --- special and end-of-text tokens -------------------------------------------------------------

def test_special_tokens_never_allowed_inside_json(tok):
    specials = _special_ids(tok)
    assert set(specials) == {0, 1, 2}                    # <|endoftext|> <|im_start|> <|im_end|>
    c = Constraint.json_schema({"type": "object", "properties": {"a": {"type": "string"}}}, tok)
    for token in tok.encode('{"a": "<|im_start|> x'):   # the text of a special token, as plain bytes
        assert not c.allowed()[specials].any()
        c.advance(token)
    assert not c.allowed()[specials].any()
    with pytest.raises(GrammarError, match=r"token 1 .*not allowed by the schema after \d+ tokens"):
        c.advance(1)


def test_end_of_text_only_when_complete(tok):
    c = Constraint.regex(r"ab(c)?", tok)
    ab = tok.encode("ab")
    for token in ab:
        assert not c.allowed()[sorted(tok.eot_ids)].any()
        c.advance(token)
    mask = c.allowed()                                   # "ab" is complete, "abc" would be too
    assert mask[sorted(tok.eot_ids)].all() and mask[tok.encode("c")[0]] and not c.done
    c.advance(tok.encode("c")[0])
    assert c.done                                        # nothing can follow "abc"
    assert np.flatnonzero(c.allowed()).tolist() == sorted(tok.eot_ids)
    c.advance(2)                                         # <|im_end|> ends it
    assert c.done and np.flatnonzero(c.allowed()).tolist() == sorted(tok.eot_ids)
    with pytest.raises(GrammarError, match="not allowed"):
        c.advance(tok.encode("a")[0])


def test_lark_grammar_may_name_a_special_token(tok):
    c = Constraint.grammar('start: "ok" <|im_end|>', tok)
    for token in tok.encode("ok"):
        assert not c.allowed()[2]
        c.advance(token)
    assert np.flatnonzero(c.allowed()).tolist() == [2]
    c.advance(2)
    assert c.done


# --- misuse -------------------------------------------------------------------------------------

def test_disallowed_token_raises_and_keeps_state(tok):
    c = Constraint.regex(r"[0-9]+", tok)
    letter = tok.encode("x")[0]
    assert not c.allowed()[letter]
    with pytest.raises(GrammarError, match=r"token \d+ .* is not allowed by the regex '\[0-9\]\+' after 0 tokens"):
        c.advance(letter)
    c.advance(tok.encode("7")[0])                        # still usable after the refusal
    assert c.allowed()[sorted(tok.eot_ids)].all()
    with pytest.raises(GrammarError, match=r"out of range \[0, 1024\)"):
        c.advance(1024)


@pytest.mark.parametrize("schema, match", [
    ({"type": "nonsense"}, r"^schema: .*nonsense"),
    ('{"type": "object"', r"^schema: not valid JSON"),
    ("[1, 2]", r"^schema: expected a JSON object, found list"),
    ({"type": "object", "properties": {"a": {"$ref": "#/missing"}}}, r"^schema: .*missing"),
    ({"type": "object", "required": "a"}, r"^schema: .*required"),
    ({"type": "string", "pattern": "("}, r"^schema: .*unclosed group"),
])
def test_invalid_schema_names_the_schema(tok, schema, match):
    with pytest.raises(GrammarError, match=match):
        Constraint.json_schema(schema, tok)


def test_invalid_regex_and_grammar(tok):
    with pytest.raises(GrammarError, match=r"^regex 'a\(': .*unclosed group"):
        Constraint.regex("a(", tok)
    with pytest.raises(GrammarError, match=r"^grammar: .*unknown name: \"zz\""):
        Constraint.grammar('start: "x" | zz', tok)


# --- the cached llguidance tokenizer ------------------------------------------------------------

def test_ll_tokenizer_is_built_once_and_shared_by_threads():
    fresh = Tokenizer.from_gguf(demo_model())
    built, outputs = [], {}

    def worker(seed: int) -> None:
        built.append(_ll_tokenizer(fresh))
        outputs[seed] = _sample(Constraint.json_schema(SCHEMAS["flat"], fresh), fresh, seed)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 8 and all(b is built[0] for b in built)
    assert built[0].vocab_size == fresh.vocab_size == 1024
    for seed, (text, stopped) in outputs.items():
        assert stopped
        jsonschema.validate(json.loads(text), SCHEMAS["flat"])
        assert (text, stopped) == _sample(Constraint.json_schema(SCHEMAS["flat"], fresh), fresh, seed)


def test_ll_tokenizer_cache_lets_the_tokenizer_go():
    import gc
    import weakref
    from edgegen.structured import _ll_cache
    fresh = Tokenizer.from_gguf(demo_model())
    c = Constraint.regex("[a-z]+", fresh)
    assert fresh in _ll_cache
    ref = weakref.ref(fresh)
    del fresh
    gc.collect()
    assert ref() is not None                             # the live constraint still holds it
    c.advance(c.allowed().nonzero()[0][3])
    del c
    gc.collect()
    assert ref() is None                                 # and so its cache entry (weak keys) is gone


def test_report_mask_time():
    """Not an assertion on speed: prints the mean allowed() time per token measured above."""
    if not _mask_seconds:
        pytest.skip("run with the sampling tests to measure")
    times = np.array(_mask_seconds) * 1e6
    print(f"\nallowed(): {len(times)} calls, mean {times.mean():.1f} us, median {np.median(times):.1f} us, "
          f"p99 {np.percentile(times, 99):.1f} us per token (vocab 1024)")
