"""Token choice as pure functions of (logits, params, rng); the rng is passed in, never global.

This is the seam the full sampler chain (penalties, min-p, mirostat, grammars) plugs into.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegen.errors import UsageError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0   # 0 means greedy
    top_k: int = 0             # 0 means off
    top_p: float = 1.0         # 1 means off

    def __post_init__(self):
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, found {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"top_k must be >= 0, found {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError(f"top_p must be in (0, 1], found {self.top_p}")


def greedy(logits: np.ndarray) -> int:
    """The most likely token; ties go to the lowest id (as llama.cpp and torch.argmax)."""
    return int(np.argmax(logits))


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    if params.temperature == 0.0:
        return greedy(logits)
    z = logits.astype(np.float64) / params.temperature
    order = np.argsort(-z, kind="stable")
    if params.top_k:
        order = order[:params.top_k]
    p = np.exp(z[order] - z[order[0]])
    p /= p.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p), params.top_p) + 1)
        order, p = order[:keep], p[:keep] / p[:keep].sum()
    return int(order[rng.choice(len(order), p=p)])
