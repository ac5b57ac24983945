"""pytest-benchmark cases: prefill (pp) and greedy decode (tg) per engine x model x quant x threads.

    pytest benchmarks/ --benchmark-only [--benchmark-columns=mean,stddev,rounds]
    EDGEGEN_BENCH_LARGE=1 pytest benchmarks/ --benchmark-only     # adds TinyLlama-1.1B shapes

Each round is one prefill of the 128-token prompt, or 64 single-token decode steps after an
untimed prefill; one warm-up round first. The output of the last round is checked against
llama.cpp (the peer engine, as the oracle): prefill logits finite and within LOGIT_TOLERANCE of
llama.cpp's (relative to their largest magnitude); each greedy token within twice that of
llama.cpp's best logit at its step, scored teacher-forced (engines.check_tokens). Random weights
make near ties common, so exact token equality is recorded (``extra_info``), not asserted.
``extra_info`` also records tokens/s, bytes read per decoded token, GB/s and its share of the
read bandwidth measured at that thread count.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import engines
import traffic

ROUNDS = 3
LARGE = os.environ.get("EDGEGEN_BENCH_LARGE") == "1"
_LARGE_ONLY = pytest.mark.skipif(not LARGE, reason="TinyLlama-1.1B shapes are slow: set EDGEGEN_BENCH_LARGE=1")
MODELS = [pytest.param("smollm", id="smollm"), pytest.param("tinyllama", id="tinyllama", marks=_LARGE_ONLY)]
QUANTS = ["f16", "q8_0", "q4_0", "q4_k_m"]
THREADS = [1, 2]
ENGINES = [engines.EDGEGEN, engines.LLAMA_CPP]
PROMPT_TOKENS = engines.DEFAULT_PROMPT
DECODE_TOKENS = engines.DEFAULT_DECODE
GB = 1e9
# max |engine - llama.cpp| / max |llama.cpp| on the prefill logits. Measured on these files: f16 6e-4,
# q8_0 1.2e-2, q4_0 1.4e-2, q4_k_m 1.2e-2 (SmolLM) and 6.3e-2 (TinyLlama): llama.cpp quantizes the
# activations to 8 bits for quantized weights and keeps an F16 KV cache, edgegen keeps float32.
LOGIT_TOLERANCE = {"f16": 1e-2, "q8_0": 5e-2, "q4_0": 1e-1, "q4_k_m": 1e-1}
# Two engines whose logits differ by at most e (relative) can disagree only where the best two
# logits are within 2e: the most a chosen token may trail llama.cpp's best.
GAP_FACTOR = 2


def _mean_seconds(benchmark) -> float:
    return benchmark.stats.stats.mean


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_prefill(benchmark, runner, reference_logits, prompt_for, engine, model, quant, threads):
    prompt, oracle = prompt_for(model), reference_logits(model, quant)

    def setup():
        runner.reset()
        return (prompt,), {}

    logits = np.array(benchmark.pedantic(runner.eval, setup=setup, rounds=ROUNDS, warmup_rounds=1))
    assert np.isfinite(logits).all(), f"{engine} prefill logits are not all finite"
    rel = float(np.abs(logits - oracle).max() / np.abs(oracle).max())
    assert rel <= LOGIT_TOLERANCE[quant], f"{engine} prefill logits differ from llama.cpp's by {rel:.2e} (relative)"
    benchmark.extra_info.update(tokens_per_s=PROMPT_TOKENS / _mean_seconds(benchmark), logits_rel_diff=rel,
                                argmax_equal=bool(np.argmax(logits) == np.argmax(oracle)))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_decode(benchmark, runner, token_check, prompt_for, read_bandwidth, gguf_path, engine, model, quant, threads):
    prompt = prompt_for(model)

    def setup():
        runner.reset()
        return (runner, runner.eval(prompt), DECODE_TOKENS), {}

    tokens = benchmark.pedantic(engines.greedy_decode, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    check = token_check(model, quant, tokens)
    assert check.worst_gap <= GAP_FACTOR * LOGIT_TOLERANCE[quant], \
        f"{engine} chose a token {check.worst_gap:.2e} (relative) below llama.cpp's best (rank {check.worst_rank})"
    tps = DECODE_TOKENS / _mean_seconds(benchmark)
    tr = traffic.decode_traffic(gguf_path(model, quant), engine)
    per_token = tr.bytes_per_token(traffic.mean_past(PROMPT_TOKENS, DECODE_TOKENS))
    gbps, bw = per_token * tps / GB, read_bandwidth(threads)
    benchmark.extra_info.update(tokens_per_s=tps, bytes_per_token=per_token, weight_bytes=tr.weight_bytes, gbps=gbps,
                                bandwidth_gbps=bw, bandwidth_share=gbps / bw, worst_rank=check.worst_rank,
                                worst_gap=check.worst_gap)
