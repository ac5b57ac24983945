"""The sampler chain against reference formulas written out here with Python loops and sorted lists."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgegen import mirostat
from edgegen.errors import UsageError
from edgegen.sampling import (Sampler, SamplingParams, apply_logit_bias, apply_mask, apply_penalties, greedy,
                              min_p, mirostat_v2, sample, softmax, temperature, top_k, top_p, typical_p)

INF = math.inf

# ---- reference formulas (plain Python; a candidate set is a {id: logit} dict) ----------------------


def ref_probs(cand: dict[int, float]) -> dict[int, float]:
    m = max(cand.values())
    e = {i: math.exp(v - m) for i, v in cand.items()}
    s = sum(e.values())
    return {i: x / s for i, x in e.items()}


def ref_top_k(cand, k):
    if k <= 0:
        return dict(cand)
    best = sorted(cand, key=lambda i: (-cand[i], i))[:k]
    return {i: cand[i] for i in best}


def ref_top_p(cand, p):
    if p >= 1.0:
        return dict(cand)
    probs, kept, cum = ref_probs(cand), {}, 0.0
    for i in sorted(cand, key=lambda i: (-cand[i], i)):
        kept[i] = cand[i]
        cum += probs[i]
        if cum >= p:
            break
    return kept


def ref_min_p(cand, p):
    probs = ref_probs(cand)
    top = max(probs.values())
    return {i: v for i, v in cand.items() if probs[i] >= p * top * (1 - 1e-12)}


def ref_typical(cand, p):
    if p >= 1.0:
        return dict(cand)
    probs = ref_probs(cand)
    h = -sum(q * math.log(q) for q in probs.values() if q > 0)
    score = {i: abs(-math.log(q) - h) for i, q in probs.items()}
    kept, cum = {}, 0.0
    for i in sorted(cand, key=lambda i: (score[i], i)):
        kept[i] = cand[i]
        cum += probs[i]
        if cum > p:
            break
    return kept


def ref_penalties(logits, history, rp, freq, pres, last_n):
    window = [] if last_n == 0 else list(history) if last_n == -1 else list(history)[-last_n:]
    out = list(logits)
    for t in set(window):
        c = window.count(t)
        out[t] = out[t] / rp if out[t] > 0 else out[t] * rp
        out[t] -= c * freq + pres
    return out


def ref_chain(logits, params: SamplingParams) -> dict[int, float]:
    """The distribution the non-mirostat chain samples from, token id -> probability."""
    cand = {i: float(v) for i, v in enumerate(logits)}
    for tok, b in params.logit_bias:
        cand[tok] += b
    cand = {i: v for i, v in cand.items() if v > -INF}
    cand = ref_top_p(ref_typical(ref_top_k(cand, params.top_k), params.typical_p), params.top_p)
    cand = ref_min_p(cand, params.min_p)
    return ref_probs({i: v / params.temperature for i, v in cand.items()})


def as_dict(ids, logits) -> dict[int, float]:
    return {int(i): float(v) for i, v in zip(ids, logits)}


def all_ids(z):
    return np.arange(len(z)), np.asarray(z, dtype=np.float64)


# Chi-square critical values at significance alpha = 0.001, by degrees of freedom.
CHI2_CRIT_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 6: 22.458, 7: 24.322, 8: 26.124,
                 9: 27.877, 10: 29.588, 11: 31.264, 12: 32.909, 13: 34.528, 14: 36.123, 15: 37.697}


def chi2_critical(df: int) -> float:
    try:
        from scipy.stats import chi2
    except ImportError:
        return CHI2_CRIT_001[df]
    return float(chi2.ppf(1 - 0.001, df))


SMALL = np.array([2.0, 1.5, 3.1, -0.5, 0.7, 2.9, -2.0, 1.1, 0.0, 2.2, -1.3, 1.9])


def logit_sets():
    """Small and large (vocab > 2048, so the subsample shortcut is taken) logits, with and without ties."""
    r = np.random.default_rng(7)
    yield SMALL
    yield r.standard_normal(300) * 2
    yield r.standard_normal(5000) * 3
    yield np.round(r.standard_normal(5000) * 4) / 2           # many exact ties
    peaked = r.standard_normal(40000)
    peaked[[3, 17, 39998]] = [14.0, 13.5, 14.0]                # the best tokens are off the subsample stride
    yield peaked
    yield r.standard_normal(40000) * 0.2                        # nearly flat: the nucleus is most of the vocab
    yield np.zeros(4)              # probabilities exactly 1/4: cumulative sums hit 0.5 exactly (>= vs >)
    yield np.zeros(3000)
    aligned = r.standard_normal(40000)
    aligned[::39] += 50 + np.arange(len(aligned[::39])) / 100   # the best tokens exactly on a stride that
    yield aligned                                               # a subsample of ~1024 of 40000 would take


# ---- stages -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 40, 200, 299, 5000])
def test_top_k_matches_reference(k):
    for z in logit_sets():
        ids, zc = top_k(*all_ids(z), k)
        assert list(ids) == sorted(ids)
        assert as_dict(ids, zc) == ref_top_k(as_dict(*all_ids(z)), k)


@pytest.mark.parametrize("p", [0.05, 0.25, 0.5, 0.9, 0.95, 0.999])
def test_top_p_matches_reference(p):
    for z in logit_sets():
        ids, zc = top_p(*all_ids(z), p)
        assert list(ids) == sorted(ids)
        assert as_dict(ids, zc) == ref_top_p(as_dict(*all_ids(z)), p)


@pytest.mark.parametrize("p", [0.2, 0.25, 0.5, 0.9, 0.99])
def test_typical_p_matches_reference(p):
    for z in logit_sets():
        ids, zc = typical_p(*all_ids(z), p)
        assert as_dict(ids, zc) == ref_typical(as_dict(*all_ids(z)), p)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.3, 1.0])
def test_min_p_matches_reference(p):
    for z in logit_sets():
        ids, zc = min_p(*all_ids(z), p)
        assert as_dict(ids, zc) == ref_min_p(as_dict(*all_ids(z)), p)


def test_off_values_keep_everything():
    ids, z = all_ids(SMALL)
    for f, off in [(top_k, 0), (top_p, 1.0), (typical_p, 1.0), (min_p, 0.0), (temperature, 1.0)]:
        i2, z2 = f(ids, z, off)
        np.testing.assert_array_equal(i2, ids)
        np.testing.assert_array_equal(z2, z)


def test_temperature_divides_and_zero_keeps_the_best():
    ids, z = all_ids(SMALL)
    np.testing.assert_allclose(temperature(ids, z, 0.7)[1], SMALL / 0.7, rtol=1e-15)
    i0, z0 = temperature(ids, z, 0.0)
    assert list(i0) == [int(np.argmax(SMALL))] and list(z0) == [SMALL.max()]


def test_softmax_matches_reference():
    np.testing.assert_allclose(softmax(SMALL), list(ref_probs(as_dict(*all_ids(SMALL))).values()), rtol=1e-13)


def test_stages_do_not_modify_their_input():
    z = SMALL.copy()
    params = SamplingParams(repeat_penalty=1.3, presence_penalty=0.2, logit_bias={1: -INF})
    apply_logit_bias(z, params.logit_bias)
    apply_penalties(z, [0, 1, 2], params)
    apply_mask(z, z > 0)
    for f, v in [(top_k, 3), (top_p, 0.5), (typical_p, 0.5), (min_p, 0.2), (temperature, 0.5)]:
        f(np.arange(len(z)), z, v)
    np.testing.assert_array_equal(z, SMALL)


# ---- penalties ----------------------------------------------------------------------------------

HISTORY = [3, 0, 5, 5, 9, 3, 5, 11, 2]


@pytest.mark.parametrize("last_n", [-1, 0, 1, 3, 4, 9, 50])
def test_penalties_change_exactly_the_window(last_n):
    params = SamplingParams(repeat_penalty=1.3, frequency_penalty=0.25, presence_penalty=0.5, repeat_last_n=last_n)
    out = apply_penalties(SMALL, HISTORY, params)
    want = ref_penalties(SMALL.tolist(), HISTORY, 1.3, 0.25, 0.5, last_n)
    np.testing.assert_allclose(out, want, rtol=1e-15)
    window = [] if last_n == 0 else HISTORY if last_n == -1 else HISTORY[-last_n:]
    assert set(np.flatnonzero(out != SMALL)) == set(window)


def test_repeat_penalty_sign_rule_and_counts():
    z = np.array([2.0, -2.0, 0.0, 1.0])
    params = SamplingParams(repeat_penalty=2.0, frequency_penalty=0.1, presence_penalty=0.0)
    out = apply_penalties(z, [0, 1, 2, 0, 0], params)
    # positive: divided; negative and zero: multiplied; then minus count * frequency_penalty
    np.testing.assert_allclose(out, [2.0 / 2 - 3 * 0.1, -2.0 * 2 - 0.1, 0.0 - 0.1, 1.0])


def test_neutral_penalties_and_bad_history():
    assert apply_penalties(SMALL, HISTORY, SamplingParams()).tolist() == SMALL.tolist()
    with pytest.raises(UsageError, match="history token id 12"):
        apply_penalties(SMALL, [1, 12], SamplingParams(repeat_penalty=1.1))
    with pytest.raises(UsageError, match="history token id -1"):
        apply_penalties(SMALL, [-1], SamplingParams(repeat_penalty=1.1))


# ---- logit bias and mask ------------------------------------------------------------------------

def test_logit_bias_adds_and_minus_inf_bans():
    params = SamplingParams(temperature=5.0, logit_bias={2: -INF, 7: 1.25})
    out = apply_logit_bias(SMALL, params.logit_bias)
    want = SMALL.copy()
    want[2], want[7] = -INF, SMALL[7] + 1.25
    np.testing.assert_array_equal(out, want)
    s = Sampler(params, np.random.default_rng(0))
    drawn = {s.sample(SMALL) for _ in range(3000)}
    assert 2 not in drawn and len(drawn) == len(SMALL) - 1
    assert Sampler(SamplingParams(logit_bias={2: -INF}), np.random.default_rng(0)).sample(SMALL) == 5


def test_logit_bias_outside_vocab_and_banning_everything():
    with pytest.raises(UsageError, match="logit_bias token id 12 is outside"):
        Sampler(SamplingParams(logit_bias={12: 1.0}), np.random.default_rng(0)).sample(SMALL)
    ban_all = SamplingParams(logit_bias={i: -INF for i in range(len(SMALL))})
    with pytest.raises(UsageError, match="every token is banned"):
        Sampler(ban_all, np.random.default_rng(0)).sample(SMALL)


def test_mask_restricts_and_all_false_raises():
    allowed = np.zeros(len(SMALL), dtype=bool)
    allowed[[0, 3, 8]] = True
    s = Sampler(SamplingParams(temperature=3.0), np.random.default_rng(0))
    assert {s.sample(SMALL, mask=allowed) for _ in range(500)} == {0, 3, 8}
    assert Sampler(SamplingParams(), np.random.default_rng(0)).sample(SMALL, mask=allowed) == 0
    with pytest.raises(UsageError, match="mask allows no token"):
        s.sample(SMALL, mask=np.zeros(len(SMALL), dtype=bool))
    with pytest.raises(UsageError, match="mask must be a bool array"):
        s.sample(SMALL, mask=np.ones(len(SMALL) - 1, dtype=bool))


# ---- the chain ----------------------------------------------------------------------------------

def test_greedy_is_argmax_after_bias_and_penalties_with_ties_to_lowest_id():
    assert greedy(np.array([1.0, 3.0, 3.0])) == 1
    assert sample(np.array([1.0, 3.0, 3.0]), SamplingParams(), np.random.default_rng(0)) == 1
    params = SamplingParams(repeat_penalty=1.5, presence_penalty=1.0, logit_bias={9: 0.5})
    z = ref_penalties((SMALL + np.eye(len(SMALL))[9] * 0.5).tolist(), HISTORY, 1.5, 0.0, 1.0, 64)
    assert Sampler(params, np.random.default_rng(0)).sample(SMALL, HISTORY) == int(np.argmax(z))


CHAIN_SETTINGS = [
    dict(temperature=1.0, top_k=5),
    dict(temperature=0.7, top_p=0.9),
    dict(temperature=1.3, min_p=0.2),
    dict(temperature=1.0, typical_p=0.8),
    dict(temperature=0.8, top_k=8, top_p=0.95, min_p=0.05, typical_p=0.97, logit_bias={5: -INF, 3: 2.0}),
]


@pytest.mark.parametrize("settings", CHAIN_SETTINGS)
def test_chain_frequencies_fit_the_filtered_distribution(settings):
    """Pearson chi-square goodness of fit of 20000 seeded draws to ref_chain, at significance 0.001.
    Tokens the reference filters out must never be drawn."""
    params = SamplingParams(**settings)
    expected = ref_chain(SMALL, params)
    s = Sampler(params, np.random.default_rng(1234))
    n = 20000
    counts = np.bincount([s.sample(SMALL) for _ in range(n)], minlength=len(SMALL))
    assert set(np.flatnonzero(counts)) <= set(expected)
    kept = sorted(expected)
    stat = sum((counts[i] - n * expected[i]) ** 2 / (n * expected[i]) for i in kept)
    assert stat < chi2_critical(len(kept) - 1), (stat, counts, expected)


def test_chi_square_check_can_fail():
    """The same statistic rejects a plausible wrong order (temperature applied before top_p)."""
    params = SamplingParams(temperature=0.5, top_p=0.9)
    wrong = ref_probs(ref_top_p({i: v / 0.5 for i, v in enumerate(SMALL)}, 0.9))
    assert wrong.keys() != ref_chain(SMALL, params).keys()
    s = Sampler(params, np.random.default_rng(1234))
    n = 20000
    counts = np.bincount([s.sample(SMALL) for _ in range(n)], minlength=len(SMALL))
    stat = sum((counts[i] - n * q) ** 2 / (n * q) for i, q in wrong.items())
    assert stat > chi2_critical(len(wrong) - 1)


@pytest.mark.parametrize("settings", [dict(temperature=0.9, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1),
                                      dict(temperature=0.8, typical_p=0.9), dict(mirostat=2, temperature=1.0)])
def test_same_seed_same_tokens_different_seed_different(settings):
    params = SamplingParams(**settings)
    z = np.random.default_rng(3).standard_normal(32000) * 2

    def run(seed):
        s, hist = Sampler(params, np.random.default_rng(seed)), []
        for _ in range(40):
            hist.append(s.sample(z, hist))
        return hist

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_legacy_sample_signature():
    params = SamplingParams(temperature=0.8, top_k=3)
    rng = np.random.default_rng(5)
    drawn = {sample(SMALL, params, rng) for _ in range(200)}
    assert drawn == set(ref_top_k(as_dict(*all_ids(SMALL)), 3))


# ---- mirostat v2 --------------------------------------------------------------------------------

def ref_mirostat_kept(z, mu):
    """Token -> renormalised probability after truncating to surprise -log2 p <= mu (at least the best)."""
    probs = ref_probs(as_dict(*all_ids(z)))
    kept = {i: q for i, q in probs.items() if -math.log2(q) <= mu}
    if not kept:
        best = min(probs, key=lambda i: (-probs[i], i))
        kept = {best: probs[best]}
    total = sum(kept.values())
    return {i: q / total for i, q in kept.items()}


def test_mirostat_mu_update_follows_the_formula():
    tau, eta = 3.0, 0.1
    s = Sampler(SamplingParams(mirostat=2, mirostat_tau=tau, mirostat_eta=eta, temperature=1.0),
                np.random.default_rng(0))
    assert s.mu == 2 * tau
    for _ in range(8):
        mu = s.mu
        tok = s.sample(SMALL)
        kept = ref_mirostat_kept(SMALL, mu)
        assert tok in kept
        assert s.mu == pytest.approx(mu - eta * (-math.log2(kept[tok]) - tau), rel=1e-12)


def test_mirostat_keeps_the_best_token_when_mu_is_below_every_surprise():
    for mu in (-1.0, 0.0, -1e6):
        tok, surprise = mirostat_v2(*all_ids(SMALL), mu, np.random.default_rng(0))
        assert tok == int(np.argmax(SMALL)) and surprise == 0.0
    assert mirostat.update(1.0, 4.0, 3.0, 0.5) == 1.0 - 0.5 * (4.0 - 3.0)


def test_mirostat_average_surprise_approaches_tau():
    z = -1.2 * np.log(np.arange(1, 501))    # Zipf: top token ~2 bits, entropy ~5.7 bits, so tau = 3 is reachable
    tau = 3.0
    s = Sampler(SamplingParams(mirostat=2, mirostat_tau=tau, mirostat_eta=0.1, temperature=1.0),
                np.random.default_rng(42))
    surprises = []
    for _ in range(3000):
        mu = s.mu
        tok = s.sample(z)
        surprises.append(-math.log2(ref_mirostat_kept(z, mu)[tok]))
    assert abs(np.mean(surprises[500:]) - tau) < 0.25


# ---- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("temperature", -0.1), ("temperature", math.nan), ("temperature", INF), ("temperature", "0.7"),
    ("top_k", -1), ("top_k", 2.5), ("top_k", True),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", math.nan),
    ("min_p", -0.1), ("min_p", 1.1), ("min_p", math.nan),
    ("typical_p", 0.0), ("typical_p", 1.2),
    ("repeat_penalty", 0.0), ("repeat_penalty", -1.0), ("repeat_penalty", math.nan),
    ("presence_penalty", math.nan), ("frequency_penalty", INF),
    ("repeat_last_n", -2), ("repeat_last_n", 1.5),
    ("mirostat", 3), ("mirostat", -1), ("mirostat_tau", -1.0), ("mirostat_eta", math.nan),
])
def test_invalid_values_name_the_parameter(field, value):
    with pytest.raises(UsageError) as e:
        SamplingParams(**{field: value})
    assert field in str(e.value) and repr(value) in str(e.value)


@pytest.mark.parametrize("bias, needle", [
    ({"5": 1.0}, "logit_bias token id"), ({-1: 1.0}, "logit_bias token id"), ({1.5: 1.0}, "logit_bias token id"),
    ({1: math.nan}, "logit_bias[1]"), ({1: INF}, "logit_bias[1]"), ([(1, 2.0), (1, 3.0)], "token id 1 twice"),
    ([(1, 2.0, 3.0)], "(token_id, bias) pairs"), ("1:2", "logit_bias must be"), (5, "logit_bias must be"),
])
def test_invalid_logit_bias(bias, needle):
    with pytest.raises(UsageError) as e:
        SamplingParams(logit_bias=bias)
    assert needle in str(e.value)


def test_mirostat_v1_is_refused_clearly():
    with pytest.raises(UsageError, match="mirostat v1 is not supported, use 2"):
        SamplingParams(mirostat=1)


def test_params_are_normalised_frozen_and_hashable():
    a = SamplingParams(logit_bias={9: -INF, 2: np.float32(0.5)}, top_k=np.int64(4))
    b = SamplingParams(logit_bias=[(2, 0.5), (9, -INF)], top_k=4)
    assert a.logit_bias == ((2, 0.5), (9, -INF)) and type(a.top_k) is int
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.top_k = 3
    d = SamplingParams()
    assert (d.temperature, d.top_k, d.top_p, d.min_p, d.typical_p, d.repeat_penalty, d.repeat_last_n,
            d.mirostat, d.mirostat_tau, d.mirostat_eta) == (0.0, 0, 1.0, 0.0, 1.0, 1.0, 64, 0, 5.0, 0.1)


def test_bad_logits_and_rng():
    s = Sampler(SamplingParams(temperature=1.0), np.random.default_rng(0))
    with pytest.raises(UsageError, match="logits must be finite"):
        s.sample(np.array([0.0, math.nan]))
    with pytest.raises(UsageError, match="1-D"):
        s.sample(np.zeros((2, 3)))
    with pytest.raises(UsageError, match="params"):
        Sampler({"temperature": 1.0}, np.random.default_rng(0))
    with pytest.raises(UsageError, match="rng"):
        Sampler(SamplingParams(), 0)
