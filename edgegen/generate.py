"""The generation loop, shared by every backend: a generator of tokens the caller bounds."""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np

from edgegen.errors import ContextLengthError
from edgegen.sampling import SamplingParams, sample


@dataclass(frozen=True)
class Token:
    id: int
    text: str          # the text this token completes (bytes of a character split over tokens are held back)


@dataclass(frozen=True)
class Timing:
    prompt_tokens: int
    prompt_seconds: float
    generated_tokens: int
    decode_seconds: float

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def decode_tps(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


class Session(Protocol):
    """What a backend gives the loop: a context that evaluates tokens and returns last logits."""
    n_ctx: int
    n_past: int

    def eval(self, tokens: Sequence[int]) -> np.ndarray: ...   # -> (vocab,) logits of the last token


class TokenSource(Protocol):
    eot_ids: frozenset[int]

    def token_bytes(self, id: int) -> bytes: ...


def generate_tokens(session: Session, tokenizer: TokenSource, prompt: Sequence[int], max_tokens: int,
                    params: SamplingParams, rng: np.random.Generator,
                    timings: list[Timing] | None = None, ignore_eos: bool = False) -> Iterator[Token]:
    """Prefill ``prompt`` as one batch, then decode one token at a time.

    Stops at an end-of-turn token (not yielded; unless ``ignore_eos``), after ``max_tokens``,
    or when the context is full. If ``timings`` is given, a ``Timing`` is appended to it when the loop ends.
    """
    if not prompt:
        raise ContextLengthError("the prompt is empty: at least one token (e.g. BOS) is needed")
    if session.n_past + len(prompt) >= session.n_ctx:
        raise ContextLengthError(f"prompt of {len(prompt)} tokens does not fit in a context of {session.n_ctx} "
                                 f"(with {session.n_past} already used and room for one new token)")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    t0 = time.perf_counter()
    logits = session.eval(prompt)
    t1 = time.perf_counter()
    n = 0
    try:
        while n < max_tokens:
            tok = sample(logits, params, rng)
            if tok in tokenizer.eot_ids and not ignore_eos:
                break
            n += 1
            yield Token(id=tok, text=decoder.decode(tokenizer.token_bytes(tok)))
            if n == max_tokens or session.n_past >= session.n_ctx:
                break
            logits = session.eval([tok])
    finally:
        if timings is not None:
            timings.append(Timing(len(prompt), t1 - t0, n, time.perf_counter() - t1))
