"""The timed text tests, llama-bench's: pp (prompt processing), tg (generation), pg (both), at a depth.

    for event in measure_backend(job):   # inside the child process (child.py)
        ...                               # {"progress": ...} after each repetition, then a result

One test is (n_prompt, n_gen, n_depth) at one thread count:
- each repetition starts from a fresh KV cache (allocated untimed) and, with n_depth > 0, fills
  it with n_depth random tokens first (untimed): the test then runs at an already-filled context;
- pp: the n_prompt random tokens in one ``eval`` call;
- tg: n_gen single-token ``eval`` calls, each token the argmax of the logits before it (the
  first from one random token's logits, computed untimed, as llama-bench starts from one token);
- pg: pp then tg in one timed run; its rate is (n_prompt + n_gen) / total time, as llama-bench's.
ttft_ms: from the start of the timed run to the first generated token id (pp and pg: the prompt
call and its argmax; tg: the first single-token call and its argmax).
Excluded: model load, tokenization (random ids), sampling (greedy argmax only), the warm-up
(one repetition of each test, dropped) and the depth fill.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from edgegen.bench.runners import open_runner, random_prompt

PROMPT_SEED = 0
NS = 1e9
EXCLUDED = ("excluded: model load, tokenization (random token ids), sampling (greedy argmax over returned "
            "logits only), the warm-up repetition, the depth fill (-d), KV-cache allocation")


@dataclass(frozen=True)
class TextTest:
    n_prompt: int
    n_gen: int
    n_depth: int = 0

    @property
    def name(self) -> str:
        """llama-bench's label: pp512, tg128, pp512+tg128, with " @ d1024" at a depth."""
        parts = ([f"pp{self.n_prompt}"] if self.n_prompt else []) + ([f"tg{self.n_gen}"] if self.n_gen else [])
        return "+".join(parts) + (f" @ d{self.n_depth}" if self.n_depth else "")

    @property
    def n_ctx(self) -> int:
        return self.n_depth + self.n_prompt + self.n_gen + 1


@dataclass(frozen=True)
class Sample:
    seconds: float            # the timed run
    ttft: float               # seconds to the first generated token id
    tokens: tuple[int, ...]   # greedy ids (empty for pp)


def greedy(runner, logits: np.ndarray, n: int) -> Iterator[int]:
    """``n`` greedy tokens, each fed back through one single-token ``eval`` before it is yielded;
    the first is the argmax of ``logits`` (those of the last token before)."""
    for _ in range(n):
        tok = int(np.argmax(logits))
        logits = runner.eval([tok])
        yield tok


def run_test(runner, test: TextTest, ids: list[int]) -> Sample:
    """One repetition of ``test``; ``ids``: n_depth fill tokens, then n_prompt prompt tokens, then one start token."""
    runner.reset()
    depth, prompt, start = ids[:test.n_depth], ids[test.n_depth:test.n_depth + test.n_prompt], ids[-1:]
    if depth:
        runner.eval(depth)                                   # untimed: the context is already filled
    # tg starts from one token's logits, computed untimed (llama-bench starts from one token too)
    logits = None if test.n_prompt else np.array(runner.eval(start))
    tokens: list[int] = []
    t0 = time.perf_counter()
    ttft = None
    if test.n_prompt:
        logits = runner.eval(prompt)
        tok = int(np.argmax(logits))                         # the first generated token id
        ttft = time.perf_counter() - t0
    for tok in greedy(runner, logits, test.n_gen):
        tokens.append(tok)
        if ttft is None:                                     # tg: the first single-token call
            ttft = time.perf_counter() - t0
    return Sample(time.perf_counter() - t0, ttft, tuple(tokens))


def stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), as llama-bench reports."""
    mean = float(np.mean(values))
    return mean, float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def peak_rss_mib() -> float:
    """This process's peak resident set: VmHWM on Linux (ru_maxrss can carry the parent's peak across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024     # macOS: bytes; elsewhere KiB


def result_record(test: TextTest, threads: int, samples: list[Sample], runner, backend: str) -> dict:
    """llama-bench's fields for one test, plus ttft_ms, peak_rss_mib and the decode traffic."""
    ns = [s.seconds * NS for s in samples]
    n_tokens = test.n_prompt + test.n_gen
    ts = [n_tokens / s.seconds for s in samples]
    (avg_ns, sd_ns), (avg_ts, sd_ts) = stats(ns), stats(ts)
    info = runner.info
    tr = info.traffic
    decode_bytes = tr.bytes_per_token(test.n_depth + test.n_prompt + (test.n_gen - 1) / 2) if test.n_gen else None
    return {"backends": backend, "model_filename": info.model_filename, "model_type": info.model_type,
            "model_size": info.model_size, "n_params": info.n_params, "model_n_params": info.n_params,
            "n_threads": threads, "n_prompt": test.n_prompt, "n_gen": test.n_gen, "n_depth": test.n_depth,
            "test": test.name, "test_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "avg_ns": round(avg_ns), "stddev_ns": round(sd_ns), "avg_ts": avg_ts, "stddev_ts": sd_ts,
            "samples_ns": [round(x) for x in ns], "samples_ts": ts,
            "ttft_ms": float(np.mean([s.ttft for s in samples])) * 1e3, "peak_rss_mib": peak_rss_mib(),
            "decode_bytes_per_token": decode_bytes, "weight_bytes_per_token": tr.weight_bytes,
            "tokens_repeatable": len({s.tokens for s in samples}) == 1}


def measure_backend(job: dict) -> Iterator[dict]:
    """Every (threads, test) of ``job`` on one backend: a progress event per repetition, then a result."""
    tests = [TextTest(*t) for t in job["tests"]]
    n_ctx = max(t.n_ctx for t in tests)
    for threads in job["threads"]:
        runner = open_runner(job["backend"], job["model"], threads, n_ctx)
        try:
            for test in tests:
                ids = random_prompt(runner.vocab, test.n_depth + test.n_prompt + 1, PROMPT_SEED)
                samples = []
                for rep in range(job["reps"] + (0 if job.get("no_warmup") else 1)):
                    sample = run_test(runner, test, ids)
                    if rep or job.get("no_warmup"):
                        samples.append(sample)
                        yield {"progress": 1}
                yield {"result": result_record(test, threads, samples, runner, job["backend"])}
        finally:
            runner.close()
