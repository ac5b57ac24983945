"""What every backend's model shares: ``generate`` and ``chat`` over the backend's sessions.

A backend implements ``new_session()`` (a fresh KV cache: ``generate.Session``) and sets
``tokenizer``, ``metadata`` (for the chat template) and ``n_ctx``; the sampler chain, structured
output, stop strings, chat templates and prompt-cache reuse then work the same for all of them.

Threads: a model holds no mutable state shared between calls except one cached session per
thread (prompt-cache reuse); a stream takes that session while it runs, and a second stream
started in the same thread meanwhile gets a fresh one. Several threads may generate at once.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from edgegen.errors import ContextLengthError, UsageError
from edgegen.generate import GenerateOptions, Stream
from edgegen.sampling import SamplingParams

SAMPLING_NAMES = frozenset(SamplingParams.__dataclass_fields__)
DEFAULT_MAX_CONTEXT = 4096  # cap on the KV cache when the caller does not choose n_ctx


# ---- what every backend checks the same way --------------------------------------------------
def resolve_threads(threads: int | None) -> int:
    """``threads`` checked, or (None) the cores this process may run on."""
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads must be >= 1 (an integer), found {threads!r}")
    return threads


def resolve_n_ctx(n_ctx: int | None, model_context: int) -> int:
    """``n_ctx`` checked against the model's context length, or (None) that length capped at DEFAULT_MAX_CONTEXT."""
    if n_ctx is not None and not 1 <= n_ctx <= model_context:
        raise UsageError(f"n_ctx must be between 1 and the model's context length {model_context}, found {n_ctx}")
    return n_ctx or min(model_context, DEFAULT_MAX_CONTEXT)


def check_truncate(n: int, held: int) -> None:
    """A session may keep 0..held of its cached positions."""
    if not 0 <= n <= held:
        raise UsageError(f"truncate: n must be between 0 and {held}, found {n}")


def check_room(n_new: int, n_past: int, n_ctx: int) -> None:
    """``n_new`` tokens after ``n_past`` must fit in the session's context."""
    if n_past + n_new > n_ctx:
        raise ContextLengthError(f"{n_new} tokens after {n_past} exceed the context of {n_ctx}")


class ModelBase:
    tokenizer: Any
    metadata: Mapping[str, Any]
    n_ctx: int

    def new_session(self):
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def check_ids(self, tokens: Sequence[int]) -> np.ndarray:
        """``tokens`` as int64 ids, each checked to be inside the vocabulary."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise UsageError(f"token id {int(bad[0])} is outside the vocabulary 0..{self.vocab_size - 1}")
        return ids

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Full forward of ``ids`` from an empty context: (len(ids), vocab) float32."""
        if len(ids) > self.n_ctx:
            raise ContextLengthError(f"{len(ids)} tokens exceed the context of {self.n_ctx}")
        return self._logits_session().eval(ids, all_logits=True)

    def _logits_session(self):
        """A fresh session that can return the logits of every position."""
        return self.new_session()

    # ---- generation ----------------------------------------------------------------------
    def generate(self, prompt: str | Sequence[int], max_tokens: int = 128, *, seed: int | None = None,
                 stop: str | Sequence[str] = (), logprobs: bool = False, ignore_eos: bool = False,
                 json_schema: dict | str | None = None, regex: str | None = None, grammar: str | None = None,
                 session=None, **sampling) -> Stream:
        """Stream tokens for ``prompt`` (text, or token ids used as given).

        Sampling options are ``SamplingParams``' fields (temperature, top_k, top_p, min_p,
        typical_p, repeat_penalty, presence_penalty, frequency_penalty, repeat_last_n,
        logit_bias, mirostat, mirostat_tau, mirostat_eta); ``seed`` makes a run reproducible.
        At most one of ``json_schema``, ``regex``, ``grammar`` (Lark) constrains the output.
        ``session``: a session from ``new_session()`` to continue (default: this thread's cached
        one, whose KV cache is reused for the prompt's longest cached prefix).
        """
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else self.check_ids(prompt).tolist()
        return self._stream(ids, max_tokens, seed, stop, logprobs, ignore_eos, json_schema, regex, grammar,
                            session, sampling)

    def chat(self, messages: Sequence[Mapping[str, Any]], max_tokens: int = 256, *, template: str | None = None,
             **options) -> Stream:
        """Stream the assistant's reply to ``messages`` ([{"role": ..., "content": ...}, ...]),
        rendered with the model's chat template (sandboxed) or ``template``; options as ``generate``.
        Successive turns reuse the cached prefix of the conversation."""
        return self.generate(self.chat_ids(messages, template), max_tokens, **options)

    def chat_ids(self, messages: Sequence[Mapping[str, Any]], template: str | None = None,
                 add_generation_prompt: bool = True) -> list[int]:
        """The token ids of ``messages`` as the chat template renders them."""
        from edgegen.chat import chat_template_for, render_chat   # Jinja loads only when chat is used
        tok = self.tokenizer
        bos = tok.token_text(tok.bos_id) if tok.bos_id is not None else ""
        eos = tok.token_text(tok.eos_id) if tok.eos_id is not None else ""
        text = render_chat(template if template is not None else chat_template_for(self.metadata), messages,
                           add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
        # a template that writes BOS itself must not get a second one from the tokenizer
        add_bos = tok.add_bos and not (bos and text.startswith(bos))
        return tok.encode(text, add_bos=add_bos, parse_special=True)

    # ---- internals -----------------------------------------------------------------------
    def _stream(self, ids, max_tokens, seed, stop, logprobs, ignore_eos, json_schema, regex, grammar, session,
                sampling) -> Stream:
        unknown = sorted(set(sampling) - SAMPLING_NAMES)
        if unknown:
            raise UsageError(f"unknown generation option '{unknown[0]}'; sampling options are: "
                             f"{', '.join(sorted(SAMPLING_NAMES))}")
        params = SamplingParams(**sampling)
        options = GenerateOptions(max_tokens=max_tokens, stop=(stop,) if isinstance(stop, str) else tuple(stop),
                                  logprobs=logprobs, ignore_eos=ignore_eos)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise UsageError(f"seed: expected an integer >= 0, found {seed!r}")
        constraint = self._constraint(json_schema, regex, grammar)
        on_end = None
        if session is None:
            session, on_end = self._thread_session()
        return Stream(session, self.tokenizer, ids, params, np.random.default_rng(seed), options, constraint, on_end)

    def _constraint(self, json_schema, regex, grammar):
        given = [name for name, v in (("json_schema", json_schema), ("regex", regex), ("grammar", grammar)) if v is not None]
        if not given:
            return None
        if len(given) > 1:
            raise UsageError(f"give at most one of json_schema, regex, grammar; found {' and '.join(given)}")
        from edgegen.structured import Constraint
        if json_schema is not None:
            return Constraint.json_schema(json_schema, self.tokenizer)
        if regex is not None:
            return Constraint.regex(regex, self.tokenizer)
        return Constraint.grammar(grammar, self.tokenizer)

    def _thread_session(self):
        """This thread's cached session, taken until the stream ends; a fresh one if it is taken."""
        local = self.__dict__.setdefault("_local", threading.local())
        session = getattr(local, "session", None)
        if session is None or getattr(local, "busy", False):
            if session is not None:   # taken by a running stream: that one keeps it
                return self.new_session(), None
            session = local.session = self.new_session()
        local.busy = True

        def release() -> None:
            local.busy = False
        return session, release
