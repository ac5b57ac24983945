"""The generation loop, shared by every backend: a generator of tokens the caller bounds.

A backend supplies a ``Session`` (its own KV cache; evaluates tokens, returns the last logits);
everything else (sampler chain, structured-output mask, stop strings, UTF-8 assembly, timing) is
here, so every backend samples the same way.
"""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from edgegen.errors import ContextLengthError, UsageError
from edgegen.sampling import Sampler, SamplingParams
from edgegen.stop import StopMatcher

# Token.id of the last item when text held back for stop-string matching is released at the
# end without a new token (the stream ended on an end-of-turn token after a partial stop string).
NO_TOKEN = -1


@dataclass(frozen=True)
class Token:
    id: int                       # NO_TOKEN for a final release of held-back text
    text: str                     # text released by this token: bytes of a character split over
                                  # tokens, and text that may begin a stop string, are held back
    logprob: float | None = None  # log p(id) under the model's raw distribution, when asked for


@dataclass(frozen=True)
class Timing:
    prompt_tokens: int            # tokens evaluated for the prompt (after any reused prefix)
    prompt_seconds: float
    generated_tokens: int
    decode_seconds: float         # from the end of the prompt to the end of the stream
    first_token_seconds: float = 0.0   # from the call to the first token (prompt included)
    reused_tokens: int = 0        # prompt tokens found in the KV cache and not recomputed
    finish_reason: str = ""       # "eos", "stop" (a stop string), "length" (max_tokens),
                                  # "context" (context full), "grammar" (constraint complete)

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def decode_tps(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


class Session(Protocol):
    """What a backend gives the loop: one context (KV cache) that evaluates tokens."""
    n_ctx: int
    tokens: list[int]             # the ids whose keys and values the cache holds, in order

    def eval(self, tokens: Sequence[int]) -> np.ndarray: ...   # -> (vocab,) logits of the last token
    def truncate(self, n: int) -> None: ...                    # keep the first n cached positions


class TokenSource(Protocol):
    eot_ids: frozenset[int]

    def token_bytes(self, id: int) -> bytes: ...


class Constraint(Protocol):
    def allowed(self) -> np.ndarray: ...
    def advance(self, token_id: int) -> None: ...
    @property
    def done(self) -> bool: ...


@dataclass(frozen=True)
class GenerateOptions:
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    ignore_eos: bool = False

    def __post_init__(self):
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 0:
            raise UsageError(f"max_tokens: expected an integer >= 0, found {self.max_tokens!r}")


def eval_prompt(session: Session, prompt: Sequence[int]) -> tuple[np.ndarray, int]:
    """Bring the session's cache to ``prompt`` and return (last logits, positions reused).

    The longest prefix the cache already holds is kept (prompt-cache reuse: a chat's earlier
    turns are not recomputed); the rest is evaluated as one batch, at least the last token.
    """
    cached = session.tokens
    common = 0
    limit = min(len(cached), len(prompt) - 1)   # the last prompt token is always evaluated: its logits are needed
    while common < limit and cached[common] == prompt[common]:
        common += 1
    session.truncate(common)
    return session.eval(prompt[common:]), common


def log_softmax_at(logits: np.ndarray, token: int) -> float:
    z = logits.astype(np.float64)
    m = z.max()
    return float(z[token] - m - np.log(np.exp(z - m).sum()))


class Stream:
    """An iterator of ``Token`` from one generation; ``timing`` is set when it ends.

    Stop early by leaving the loop and calling ``close()`` (or just dropping the stream)."""

    def __init__(self, session: Session, tokenizer: TokenSource, prompt: Sequence[int], params: SamplingParams,
                 rng: np.random.Generator, options: GenerateOptions, constraint: Constraint | None = None,
                 on_end: Callable[[], None] | None = None):
        """``on_end`` runs once when the stream ends, is closed, or fails (a backend releases its session)."""
        self._on_end = on_end
        try:
            self._check(session, prompt)
        except BaseException:
            self._end()
            raise
        self.timing: Timing | None = None
        self._gen = self._run(session, tokenizer, list(prompt), Sampler(params, rng), options, constraint)

    def _end(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    @staticmethod
    def _check(session: Session, prompt: Sequence[int]) -> None:
        if not prompt:
            raise ContextLengthError("the prompt is empty: at least one token (e.g. BOS) is needed")
        if len(prompt) >= session.n_ctx:
            raise ContextLengthError(f"prompt of {len(prompt)} tokens does not fit in a context of {session.n_ctx} "
                                     "(with room for one new token)")

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Token:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()
        self._end()   # also when the stream was never started

    def _run(self, session: Session, tokenizer: TokenSource, prompt: list[int], sampler: Sampler,
             options: GenerateOptions, constraint: Constraint | None) -> Iterator[Token]:
        t0 = time.perf_counter()
        logits, reused = eval_prompt(session, prompt)
        t1 = time.perf_counter()
        state = _LoopState(t0=t0, t1=t1, reused=reused, prompt_tokens=len(prompt) - reused)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(options.stop) if options.stop else None
        history = list(prompt)
        try:
            while state.n < options.max_tokens:
                tok = sampler.sample(logits, history, None if constraint is None else constraint.allowed())
                if constraint is not None:
                    constraint.advance(tok)
                if tok in tokenizer.eot_ids and not options.ignore_eos:
                    state.finish = "eos"
                    break
                state.n += 1
                history.append(tok)
                logprob = log_softmax_at(logits, tok) if options.logprobs else None
                text = decoder.decode(tokenizer.token_bytes(tok))
                last_reason = self._ends_after(state.n, options, session, constraint)
                if matcher is not None:
                    text, hit = matcher.feed(text)
                    if hit:
                        state.finish = "stop"
                        yield state.first(Token(tok, text, logprob))
                        return
                if last_reason:
                    state.finish = last_reason
                    yield state.first(Token(tok, text + self._release(decoder, matcher), logprob))
                    return
                yield state.first(Token(tok, text, logprob))
                logits = session.eval([tok])
            else:
                state.finish = "length"
            rest = self._release(decoder, matcher)
            if rest:
                yield state.first(Token(NO_TOKEN, rest))
        finally:
            self.timing = state.timing()
            self._end()

    @staticmethod
    def _ends_after(n: int, options: GenerateOptions, session: Session, constraint: Constraint | None) -> str:
        if n >= options.max_tokens:
            return "length"
        if constraint is not None and constraint.done:
            return "grammar"
        if len(session.tokens) >= session.n_ctx:   # no room left to evaluate this token
            return "context"
        return ""

    @staticmethod
    def _release(decoder, matcher: StopMatcher | None) -> str:
        tail = decoder.decode(b"", final=True)
        if matcher is None:
            return tail
        text, _ = matcher.feed(tail)
        return text + matcher.flush()


@dataclass
class _LoopState:
    t0: float
    t1: float
    reused: int
    prompt_tokens: int
    n: int = 0
    finish: str = ""
    t_first: float | None = field(default=None)

    def first(self, token: Token) -> Token:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        return token

    def timing(self) -> Timing:
        now = time.perf_counter()
        return Timing(prompt_tokens=self.prompt_tokens, prompt_seconds=self.t1 - self.t0, generated_tokens=self.n,
                      decode_seconds=now - self.t1,
                      first_token_seconds=(self.t_first if self.t_first is not None else now) - self.t0,
                      reused_tokens=self.reused, finish_reason=self.finish or "closed")
