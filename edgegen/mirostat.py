"""Mirostat v2 (Basu et al. 2021, "Mirostat: a neural text decoding algorithm that directly controls
perplexity", Alg. 2), following llama.cpp's ``llama_sampler_mirostat_v2``.

Per token, with surprise s(p) = -log2 p and a running threshold mu (starting at 2 * tau):
  1. keep the tokens whose surprise is <= mu (always at least the most probable one);
  2. renormalise and sample a token x from the kept ones;
  3. observe s = -log2 p'(x) under the renormalised distribution;
  4. mu <- mu - eta * (s - tau).
Steps 1, 3 and 4 are the pure functions here; step 2 (the draw) lives in ``edgegen.sampling``.
"""
from __future__ import annotations

import numpy as np


def initial_mu(tau: float) -> float:
    """mu starts at twice the target surprise."""
    return 2.0 * tau


def surprise(p: float | np.ndarray) -> float | np.ndarray:
    """-log2 p in bits (+inf for p == 0)."""
    with np.errstate(divide="ignore"):
        return -np.log2(p)


def keep(probs: np.ndarray, mu: float) -> np.ndarray:
    """Step 1: bool mask of the tokens with surprise <= mu; if none, the most probable (lowest id on ties)."""
    with np.errstate(over="ignore"):           # a very negative mu: threshold inf, nothing kept
        mask = probs >= np.exp2(-mu)            # -log2 p <= mu, without a log over the vocabulary
    if not mask.any():
        mask[int(np.argmax(probs))] = True
    return mask


def update(mu: float, observed: float, tau: float, eta: float) -> float:
    """Step 4: move mu against the error between the observed and the target surprise."""
    return mu - eta * (observed - tau)
