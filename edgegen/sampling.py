"""Token choice with llama.cpp's sampler chain, as pure functions of (logits, params, rng).

The rng is always passed in, never global: the same ``np.random.default_rng(seed)`` gives the same tokens.

Chain (llama.cpp's default sampler order):
  1. logit bias        2. repetition penalties (repeat / frequency / presence)
  3. allowed-token mask (from a grammar; disallowed -> -inf)
  4. temperature == 0: greedy argmax (ties to the lowest id)
     otherwise:        top_k -> typical_p -> top_p -> min_p -> temperature -> draw
     mirostat == 2:    temperature -> mirostat v2 (instead of top_k / typical_p / top_p / min_p)

Stages 1-3 map full-vocab float64 logits to new logits. The truncation stages work on a candidate set:
``(ids, logits)``, two arrays with ``ids`` strictly ascending, and return a smaller such set; every
probability is the softmax over the current candidates, as in llama.cpp. Ties are broken by lowest id.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgegen import mirostat
from edgegen.errors import UsageError

__all__ = ["SamplingParams", "Sampler", "greedy", "sample", "apply_logit_bias", "apply_penalties",
           "apply_mask", "top_k", "typical_p", "top_p", "min_p", "temperature", "mirostat_v2", "softmax", "draw"]

_SUBSAMPLE = 1024    # top_k / top_p / typical_p find their short list from a subsample of about this size
_PREFIX_RANKS = (8, 32, 128, 512)   # subsample ranks that top_p / typical_p try as thresholds, in turn


# ---- parameters ---------------------------------------------------------------------------------

def _real(name: str, value, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float in the interval, else a UsageError naming ``name``, the interval and the value."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)   # False for NaN
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise UsageError(f"{name} must be a number in {interval}, found {value!r}")
    return v


def _int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise UsageError(f"{name} must be an integer >= {lo}, found {value!r}")
    return int(value)


def _logit_bias(raw) -> tuple[tuple[int, float], ...]:
    """A {token_id: bias} mapping or (token_id, bias) pairs -> pairs sorted by id, each id once."""
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise UsageError(f"logit_bias must be a {{token_id: bias}} mapping or (token_id, bias) pairs, found {raw!r}")
    pairs: dict[int, float] = {}
    for item in (raw.items() if isinstance(raw, Mapping) else raw):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise UsageError(f"logit_bias entries must be (token_id, bias) pairs, found {item!r}")
        tok = _int("logit_bias token id", item[0], 0)
        if tok in pairs:
            raise UsageError(f"logit_bias has token id {tok} twice")
        pairs[tok] = _real(f"logit_bias[{tok}] (-inf bans the token)", item[1], -math.inf, math.inf, hi_open=True)
    return tuple(sorted(pairs.items()))


@dataclass(frozen=True)
class SamplingParams:
    """llama.cpp's sampler settings; every default is neutral (greedy, no truncation, no penalty).

    ``logit_bias`` may be given as a dict {token_id: bias}; it is stored as pairs sorted by id so the
    params stay hashable."""
    temperature: float = 0.0        # 0 = greedy
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1 = off
    min_p: float = 0.0              # 0 = off
    typical_p: float = 1.0          # 1 = off
    repeat_penalty: float = 1.0     # 1 = off
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_last_n: int = 64         # 0 = off, -1 = whole history
    logit_bias: tuple[tuple[int, float], ...] = ()
    mirostat: int = 0               # 0 = off, 2 = mirostat v2
    mirostat_tau: float = 5.0       # target surprise, bits
    mirostat_eta: float = 0.1       # learning rate of mu

    def __post_init__(self):
        inf = math.inf
        checked = {
            "temperature": _real("temperature", self.temperature, 0.0, inf, hi_open=True),
            "top_k": _int("top_k", self.top_k, 0),
            "top_p": _real("top_p", self.top_p, 0.0, 1.0, lo_open=True),
            "min_p": _real("min_p", self.min_p, 0.0, 1.0),
            "typical_p": _real("typical_p", self.typical_p, 0.0, 1.0, lo_open=True),
            "repeat_penalty": _real("repeat_penalty", self.repeat_penalty, 0.0, inf, True, True),
            "presence_penalty": _real("presence_penalty", self.presence_penalty, -inf, inf, True, True),
            "frequency_penalty": _real("frequency_penalty", self.frequency_penalty, -inf, inf, True, True),
            "repeat_last_n": _int("repeat_last_n", self.repeat_last_n, -1),
            "logit_bias": _logit_bias(self.logit_bias),
            "mirostat": _int("mirostat", self.mirostat, 0),
            "mirostat_tau": _real("mirostat_tau", self.mirostat_tau, 0.0, inf, hi_open=True),
            "mirostat_eta": _real("mirostat_eta", self.mirostat_eta, 0.0, inf, hi_open=True),
        }
        if checked["mirostat"] == 1:
            raise UsageError("mirostat v1 is not supported, use 2 (mirostat must be 0 or 2, found 1)")
        if checked["mirostat"] not in (0, 2):
            raise UsageError(f"mirostat must be 0 (off) or 2 (v2), found {self.mirostat!r}")
        for name, value in checked.items():     # plain Python types: equal params hash equal
            object.__setattr__(self, name, value)


# ---- full-vocab stages ------------------------------------------------------------------------

def apply_logit_bias(logits: np.ndarray, logit_bias: tuple[tuple[int, float], ...]) -> np.ndarray:
    """logit[id] += bias for each (id, bias) pair; a bias of -inf bans the token."""
    return _biased(np.array(logits, dtype=np.float64), logit_bias)


def apply_penalties(logits: np.ndarray, history: Sequence[int], params: SamplingParams) -> np.ndarray:
    """llama.cpp's penalties over the window: for each distinct token with count c,
    logit = logit / repeat_penalty if logit > 0 else logit * repeat_penalty,
    then logit -= c * frequency_penalty + presence_penalty."""
    return _penalized(np.array(logits, dtype=np.float64), history, params)


def apply_mask(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Set the logits of tokens the mask disallows (False) to -inf."""
    return _masked(np.array(logits, dtype=np.float64), mask)


def penalty_window(history: Sequence[int], repeat_last_n: int) -> np.ndarray:
    """The tokens the penalties look at: the last ``repeat_last_n`` (0: none, -1: all)."""
    if repeat_last_n == 0:
        return np.zeros(0, dtype=np.int64)
    window = history if repeat_last_n == -1 else history[-repeat_last_n:]   # slice before converting
    return np.asarray(window, dtype=np.int64).reshape(-1)


# The three stages above, in place on an array the caller owns (the chain makes one copy, not three).

def _biased(z: np.ndarray, logit_bias: tuple[tuple[int, float], ...]) -> np.ndarray:
    if logit_bias:
        ids = np.fromiter((t for t, _ in logit_bias), dtype=np.int64, count=len(logit_bias))
        if ids[-1] >= len(z):   # params keep the pairs sorted by id
            raise UsageError(f"logit_bias token id {ids[-1]} is outside the vocabulary [0, {len(z)})")
        z[ids] += np.fromiter((b for _, b in logit_bias), dtype=np.float64, count=len(logit_bias))
    return z


def _penalized(z: np.ndarray, history: Sequence[int], params: SamplingParams) -> np.ndarray:
    if params.repeat_penalty == 1.0 and params.frequency_penalty == 0.0 and params.presence_penalty == 0.0:
        return z
    window = penalty_window(history, params.repeat_last_n)
    if window.size == 0:
        return z
    if window.min() < 0 or window.max() >= len(z):
        bad = window[(window < 0) | (window >= len(z))][0]
        raise UsageError(f"history token id {bad} is outside the vocabulary [0, {len(z)})")
    toks, counts = np.unique(window, return_counts=True)
    v = z[toks]
    v = np.where(v > 0, v / params.repeat_penalty, v * params.repeat_penalty)
    z[toks] = v - (counts * params.frequency_penalty + params.presence_penalty)
    return z


def _masked(z: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return z
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != z.shape:
        raise UsageError(f"mask must be a bool array of shape {z.shape}, found {mask.dtype} of shape {mask.shape}")
    if not mask.any():
        raise UsageError("mask allows no token: the grammar has no valid continuation")
    z[~mask] = -np.inf
    return z


# ---- candidate-set stages: (ids, logits) -> (ids, logits), ids ascending -------------------------

def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _sample_ranked(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Positions, ordered by key, of a strided subsample ``keys[::stride]`` of about _SUBSAMPLE keys."""
    stride = max(1, len(keys) // _SUBSAMPLE)
    return np.argsort(keys[::stride]), stride


def _largest(values: np.ndarray, m: int) -> np.ndarray:
    """Ascending positions of the m largest values (ties: lowest positions), in O(n), no full sort.

    A subsample proposes a threshold; if at least m values lie at or above it, the m largest are all
    among them (their ties included), so the exact selection runs on that short list."""
    n = len(values)
    if m >= n:
        return np.arange(n)
    sub, stride = _sample_ranked(values)
    rank = len(sub) - 9 - 2 * (m // stride)        # ~2x the subsample rank of the m-th largest, from the top
    pos = np.flatnonzero(values >= values[::stride][sub[rank]]) if rank >= 0 else None
    if pos is None or len(pos) < m:
        pos = np.arange(n)
    v = values[pos]
    t = np.partition(v, len(v) - m)[len(v) - m]   # the m-th largest value
    above = np.flatnonzero(v > t)
    at = np.flatnonzero(v == t)[:m - len(above)]
    return pos[np.sort(np.concatenate([above, at]))]


def _cut(keys: np.ndarray, pos: np.ndarray, weights: np.ndarray, target: float, strict: bool) -> np.ndarray | None:
    """Ascending positions of the shortest (key, position)-ordered prefix of ``pos`` (ascending)
    whose weight reaches ``target``; None if all of ``pos`` does not."""
    o = pos[np.argsort(keys[pos])]                # quicksort: ties are put in position order only
    c = _first_reaching(weights[o], target, strict)   # where they decide the cut
    if c is not None and c < len(o) and keys[o[c]] == keys[o[c - 1]]:
        ko = keys[o]                              # the cut splits a run of equal keys: order it, cut again
        lo, hi = np.searchsorted(ko, ko[c - 1], "left"), np.searchsorted(ko, ko[c - 1], "right")
        o[lo:hi] = np.sort(o[lo:hi])
        c = _first_reaching(weights[o], target, strict)
    return None if c is None else _ascending(o[:c], len(keys))


def _first_reaching(w: np.ndarray, target: float, strict: bool) -> int | None:
    """Length of the shortest prefix of ``w`` whose sum is > target (strict) or >= target."""
    cum = np.cumsum(w)
    hit = cum > target if strict else cum >= target
    return int(np.argmax(hit)) + 1 if hit.any() else None


def _ascending(pos: np.ndarray, n: int) -> np.ndarray:
    """``pos`` (distinct positions below n) sorted; by a bool scatter when that beats a sort."""
    if len(pos) * 16 < n:
        return np.sort(pos)
    hit = np.zeros(n, dtype=bool)
    hit[pos] = True
    return np.flatnonzero(hit)


def _prefix(keys: np.ndarray, weights: np.ndarray, target: float, strict: bool) -> np.ndarray:
    """Ascending positions of the shortest (key, position)-ordered prefix whose summed weight
    reaches ``target`` (``> target`` if strict, else ``>=``); all positions if none does.

    The keys at or below any threshold form a prefix of that order, so the answer is searched for
    among them alone: thresholds at growing ranks of a sorted subsample, then all keys."""
    n = len(keys)
    sub, stride = _sample_ranked(keys)
    for rank in _PREFIX_RANKS if stride > 1 else ():
        pos = np.flatnonzero(keys <= keys[::stride][sub[rank]])
        if weights[pos].sum() < target - 1e-9:    # clearly too little weight: skip the sort
            continue
        got = _cut(keys, pos, weights, target, strict)
        if got is not None:
            return got
    got = _cut(keys, np.arange(n), weights, target, strict)
    return np.arange(n) if got is None else got


def top_k(ids: np.ndarray, logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k largest logits (0: off)."""
    if k <= 0 or k >= len(ids):
        return ids, logits
    keep = _largest(logits, k)
    return ids[keep], logits[keep]


def typical_p(ids: np.ndarray, logits: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Locally typical sampling (Meister et al. 2022, llama.cpp ``typical``): order by
    |-log p_i - H| ascending and keep the shortest prefix whose mass exceeds p (1: off)."""
    if p >= 1.0:
        return ids, logits
    z = logits - logits.max()
    e = np.exp(z)
    log_sum = np.log(e.sum())
    probs = e / np.exp(log_sum)
    neg_log = log_sum - z                           # -log p_i, +inf where p_i == 0
    with np.errstate(invalid="ignore"):
        entropy = float(np.sum(probs * neg_log, where=probs > 0))
    keep = _prefix(np.abs(neg_log - entropy), probs, p, strict=True)
    return ids[keep], logits[keep]


def top_p(ids: np.ndarray, logits: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus: keep the shortest most-probable prefix whose mass is >= p (1: off)."""
    if p >= 1.0:
        return ids, logits
    keep = _prefix(-logits, softmax(logits), p, strict=False)
    return ids[keep], logits[keep]


def min_p(ids: np.ndarray, logits: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep tokens with prob >= p * max prob, i.e. logit >= max logit + log p (0: off)."""
    if p <= 0.0:
        return ids, logits
    keep = logits >= logits.max() + np.log(p)
    return ids[keep], logits[keep]


def temperature(ids: np.ndarray, logits: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """logits / t; t == 0 keeps only the most likely token (as llama.cpp's ``temp``)."""
    if t == 0.0:
        i = int(np.argmax(logits))
        return ids[i:i + 1], logits[i:i + 1]
    return ids, logits / t


def draw_index(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw with one ``rng.random()``; zero-probability entries are never chosen."""
    cdf = np.cumsum(probs)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(probs) - 1)


def draw(ids: np.ndarray, logits: np.ndarray, rng: np.random.Generator) -> int:
    """Sample one token id from softmax(logits) over the candidates."""
    return int(ids[draw_index(softmax(logits), rng)])


def mirostat_v2(ids: np.ndarray, logits: np.ndarray, mu: float,
                rng: np.random.Generator) -> tuple[int, float]:
    """Mirostat v2 steps 1-3 (see ``edgegen.mirostat``): truncate to surprise <= mu, renormalise,
    draw. Returns (token id, observed surprise in bits); the caller updates mu."""
    probs = softmax(logits)
    keep = mirostat.keep(probs, mu)
    ids, probs = ids[keep], probs[keep] / probs[keep].sum()
    i = draw_index(probs, rng)
    return int(ids[i]), float(mirostat.surprise(probs[i]))


# ---- the chain ----------------------------------------------------------------------------------

def prepare(logits: np.ndarray, history: Sequence[int], params: SamplingParams,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Stages 1-3 on a float64 copy of ``logits``; checks that some token is still possible."""
    z = np.array(logits, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise UsageError(f"logits must be a non-empty 1-D array, found shape {z.shape}")
    z = _masked(_penalized(_biased(z, params.logit_bias), history, params), mask)
    top = z.max()                               # NaN if any logit is NaN
    if np.isnan(top) or top == np.inf:
        raise UsageError(f"logits must be finite or -inf, found {top}")
    if top == -np.inf:
        raise UsageError("every token is banned (logit_bias -inf / mask): nothing can be sampled")
    return z


def candidates(z: np.ndarray, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The candidate set (ids, logits) of the tokens whose logit is not -inf; with k > 0 only the
    k best of them (top_k on the full vocabulary without materialising every id)."""
    if 0 < k < len(z):
        ids = _largest(z, k)
    else:
        alive = z > -np.inf
        if alive.all():
            return np.arange(len(z)), z
        ids = np.flatnonzero(alive)
    zc = z[ids]
    alive = zc > -np.inf
    return (ids, zc) if alive.all() else (ids[alive], zc[alive])


def truncate(ids: np.ndarray, logits: np.ndarray, params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """top_k -> typical_p -> top_p -> min_p, in llama.cpp's order."""
    ids, logits = top_k(ids, logits, params.top_k)
    ids, logits = typical_p(ids, logits, params.typical_p)
    ids, logits = top_p(ids, logits, params.top_p)
    return min_p(ids, logits, params.min_p)


class Sampler:
    """The mutable part of one generation: the rng and mirostat's mu. Build one per generation."""

    def __init__(self, params: SamplingParams, rng: np.random.Generator):
        if not isinstance(params, SamplingParams):
            raise UsageError(f"params must be a SamplingParams, found {type(params).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise UsageError(f"rng must be a numpy Generator (np.random.default_rng(seed)), "
                             f"found {type(rng).__name__}")
        self.params = params
        self.rng = rng
        self.mu = mirostat.initial_mu(params.mirostat_tau)

    def sample(self, logits: np.ndarray, history: Sequence[int] = (), mask: np.ndarray | None = None) -> int:
        """Choose the next token from (vocab,) ``logits`` given the ``history`` of token ids so far."""
        p = self.params
        z = prepare(logits, history, p, mask)
        if p.mirostat == 2:
            ids, zc = temperature(*candidates(z), p.temperature)
            tok, surprise = mirostat_v2(ids, zc, self.mu, self.rng)
            self.mu = mirostat.update(self.mu, surprise, p.mirostat_tau, p.mirostat_eta)
            return tok
        if p.temperature == 0.0:
            return int(np.argmax(z))
        ids, zc = truncate(*candidates(z, p.top_k), p)   # top_k already done: truncate skips it
        return draw(*temperature(ids, zc, p.temperature), self.rng)


def greedy(logits: np.ndarray) -> int:
    """The most likely token; ties go to the lowest id (as llama.cpp and torch.argmax)."""
    return int(np.argmax(logits))


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """One token with no history (penalties see nothing; mirostat starts from its initial mu)."""
    return Sampler(params, rng).sample(logits)
