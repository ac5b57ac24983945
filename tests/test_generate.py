"""The generation loop (edgegen/generate.py) and the model API over it (backends/base.py).

Loop details run against a scripted session and tokenizer, where every token's bytes and every
logit are chosen by the test; the model-level checks use the bundled demo model.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import edgegen
from demo_model import demo_model
from edgegen.errors import ContextLengthError, GrammarError, UsageError
from edgegen.generate import NO_TOKEN, GenerateOptions, Stream, log_softmax_at
from edgegen.sampling import SamplingParams

# ---- a scripted backend ---------------------------------------------------------------------

EOT = 0


class ScriptTokenizer:
    """Token i is the i-th byte string of ``pieces``; token 0 ends the turn."""
    eot_ids = frozenset({EOT})

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self.vocab_size = len(pieces)

    def token_bytes(self, id: int) -> bytes:
        return self.pieces[id]


class ScriptSession:
    """Greedy-steered: step s of the script puts the largest logit on script[s]."""

    def __init__(self, script: list[int], vocab: int, n_ctx: int = 64):
        self.script, self.vocab, self.n_ctx = script, vocab, n_ctx
        self.tokens: list[int] = []
        self.evals: list[list[int]] = []

    def truncate(self, n: int) -> None:
        del self.tokens[n:]

    def eval(self, tokens):
        self.evals.append(list(tokens))
        self.tokens.extend(tokens)
        step = len(self.evals) - 1
        logits = np.zeros(self.vocab, np.float32)
        logits[self.script[step] if step < len(self.script) else EOT] = 5.0
        return logits


def run(pieces, script, prompt=(1,), n_ctx=64, **options) -> tuple[list, Stream]:
    tok = ScriptTokenizer(pieces)
    session = ScriptSession(script, len(pieces), n_ctx)
    stream = Stream(session, tok, list(prompt), SamplingParams(), np.random.default_rng(0), GenerateOptions(**options))
    return list(stream), stream


PIECES = [b"", b"a", b"b", b"c", b"\xc3", b"\xa9", b" ", b"END", b"x"]


def test_utf8_character_split_over_tokens_is_released_whole():
    toks, stream = run(PIECES, [1, 4, 5, 2], max_tokens=10)
    assert [t.id for t in toks] == [1, 4, 5, 2]
    assert [t.text for t in toks] == ["a", "", "\u00e9", "b"]
    assert stream.timing.finish_reason == "eos" and stream.timing.generated_tokens == 4


def test_stop_string_split_across_tokens_is_caught_and_never_emitted():
    # the stop "bEND" spans the tokens "b" and "END"
    toks, stream = run(PIECES, [1, 2, 7, 3], max_tokens=10, stop=("bEND",))
    assert "".join(t.text for t in toks) == "a"
    assert stream.timing.finish_reason == "stop"
    assert [t.id for t in toks] == [1, 2, 7]    # the token that completes the stop ends the stream


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    toks, _ = run(PIECES, [1, 2, 3, 8], max_tokens=10, stop=("bx",))
    assert "".join(t.text for t in toks) == "abcx"
    assert [t.text for t in toks] == ["a", "", "bc", "x"]


def test_held_back_text_is_released_at_eos_and_at_max_tokens():
    toks, _ = run(PIECES, [1, 2], max_tokens=10, stop=("bc",))
    assert [(t.id, t.text) for t in toks] == [(1, "a"), (2, ""), (NO_TOKEN, "b")]
    toks, stream = run(PIECES, [1, 2, 3], max_tokens=2, stop=("bc",))
    assert [(t.id, t.text) for t in toks] == [(1, "a"), (2, "b")]
    assert stream.timing.finish_reason == "length"


def test_incomplete_utf8_at_the_end_becomes_a_replacement_character():
    toks, _ = run(PIECES, [1, 4], max_tokens=2)
    assert "".join(t.text for t in toks) == "a\ufffd"


def test_context_full_ends_the_stream():
    # 3 prompt positions in a context of 6: tokens 1..3 are fed back, the 4th comes from the last logits
    toks, stream = run(PIECES, [1, 1, 1, 1, 1, 1], prompt=(1, 2, 3), n_ctx=6, max_tokens=50)
    assert len(toks) == 4 and stream.timing.finish_reason == "context"


def test_max_tokens_zero_and_negative():
    toks, stream = run(PIECES, [1], max_tokens=0)
    assert toks == [] and stream.timing.finish_reason == "length"
    with pytest.raises(UsageError, match="max_tokens"):
        run(PIECES, [1], max_tokens=-1)


def test_closing_early_sets_timing_and_stops_evaluating():
    tok = ScriptTokenizer(PIECES)
    session = ScriptSession([1] * 100, len(PIECES))
    stream = Stream(session, tok, [1], SamplingParams(), np.random.default_rng(0), GenerateOptions(max_tokens=100))
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    assert stream.timing.finish_reason == "closed" and stream.timing.generated_tokens == 3
    assert len(session.evals) == 3     # the prompt and two fed-back tokens; nothing after the break


def test_prompt_cache_reuse_evaluates_only_the_new_suffix():
    tok = ScriptTokenizer(PIECES)
    session = ScriptSession([1] * 10, len(PIECES))
    list(Stream(session, tok, [1, 2, 3], SamplingParams(), np.random.default_rng(0), GenerateOptions(max_tokens=2)))
    before = len(session.evals)
    stream = Stream(session, tok, [1, 2, 3, 1, 5, 6], SamplingParams(), np.random.default_rng(0),
                    GenerateOptions(max_tokens=1))
    list(stream)
    # cached: 1 2 3 1 (the prompt and the fed-back token); new: 5 6
    assert session.evals[before] == [5, 6] and stream.timing.reused_tokens == 4


# ---- the model API on the bundled demo model ---------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return edgegen.load(demo_model(), threads=2)


def test_same_seed_same_tokens_and_different_seeds_differ(model):
    opts = dict(max_tokens=24, temperature=1.0, top_k=50, min_p=0.02, repeat_penalty=1.1, ignore_eos=True)
    a = [t.id for t in model.generate("Once upon a time", seed=7, **opts)]
    b = [t.id for t in model.generate("Once upon a time", seed=7, **opts)]
    c = [t.id for t in model.generate("Once upon a time", seed=8, **opts)]
    assert a == b and a != c


def test_logprobs_are_the_models_log_softmax(model):
    ids = model.tokenizer.encode("The cat sat")
    toks = list(model.generate(ids, max_tokens=4, logprobs=True, ignore_eos=True))
    logits = model.logits(ids + [t.id for t in toks[:-1]])
    for i, t in enumerate(toks):
        assert t.logprob == pytest.approx(log_softmax_at(logits[len(ids) - 1 + i], t.id), abs=2e-3)


def test_chat_reuses_the_conversation_prefix_and_matches_recomputing(model):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
    first = model.chat(messages, max_tokens=8, ignore_eos=True)
    reply = "".join(t.text for t in first)
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And another one?"}]
    second = model.chat(messages, max_tokens=16, ignore_eos=True)
    reused = [t.id for t in second]
    assert second.timing.reused_tokens > 10
    fresh = [t.id for t in model.generate(model.chat_ids(messages), max_tokens=16, ignore_eos=True,
                                          session=model.new_session())]
    assert reused == fresh


def test_generators_in_threads_equal_sequential_runs(model):
    prompts = ["Once upon a time", "The king said", "In the morning", "A small dog"]
    opts = dict(max_tokens=20, temperature=0.9, top_p=0.95, ignore_eos=True)
    want = [[t.id for t in model.generate(p, seed=i, **opts)] for i, p in enumerate(prompts)]
    got: list = [None] * len(prompts)

    def work(i):
        got[i] = [t.id for t in model.generate(prompts[i], seed=i, **opts)]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def test_two_streams_in_one_thread_do_not_share_a_session(model):
    opts = dict(max_tokens=10, ignore_eos=True)
    want_a = [t.id for t in model.generate("Once upon a time", **opts)]
    want_b = [t.id for t in model.generate("The king said", **opts)]
    a, b = model.generate("Once upon a time", **opts), model.generate("The king said", **opts)
    got_a, got_b = [], []
    for ta, tb in zip(a, b):   # interleaved
        got_a.append(ta.id)
        got_b.append(tb.id)
    assert got_a == want_a and got_b == want_b


SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.parametrize("seed", [None] + list(range(50)), ids=lambda s: "greedy" if s is None else f"seed{s}")
def test_json_schema_output_always_validates(model, seed):
    jsonschema = pytest.importorskip("jsonschema")
    sampled = dict(temperature=1.0, seed=seed) if seed is not None else {}
    stream = model.generate("Person:", max_tokens=60, json_schema=SCHEMA, **sampled)
    text = "".join(t.text for t in stream)
    assert stream.timing.finish_reason in ("grammar", "eos"), text
    jsonschema.validate(json.loads(text), SCHEMA)


def test_regex_output_matches(model):
    import re
    for seed in range(10):
        text = "".join(t.text for t in model.generate("Date:", max_tokens=20, temperature=1.0, seed=seed,
                                                      regex=r"20[0-9]{2}-[01][0-9]-[0-3][0-9]"))
        assert re.fullmatch(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]", text), text


def test_bad_options_name_the_parameter(model):
    with pytest.raises(UsageError, match="temperature"):
        model.generate("x", temperature=-1.0)
    with pytest.raises(UsageError, match="top_p"):
        model.generate("x", top_p=1.5)
    with pytest.raises(UsageError, match="unknown generation option 'top_q'"):
        model.generate("x", top_q=0.5)
    with pytest.raises(UsageError, match="seed"):
        model.generate("x", seed=-3)
    with pytest.raises(UsageError, match="at most one of"):
        model.generate("x", regex="a", grammar='start: "a"')
    with pytest.raises(GrammarError, match="schema"):
        model.generate("x", json_schema={"type": "nonsense"})
    with pytest.raises(UsageError, match="token id 5000"):
        model.generate([1, 5000])
    with pytest.raises(ContextLengthError):
        list(model.generate("word " * 2000))
