"""``edgegen bench`` on a tiny GGUF: JSON and CSV carry every field, the tests are the ones asked for,
the figures agree with each other and with gguf-py's reading of the file."""
from __future__ import annotations

import csv
import importlib.util
import io
import statistics

import numpy as np
import pytest
from bench.helpers import STUB_GBPS, run_bench

from edgegen.bench.output import TEXT_FIELDS

LLAMA_BENCH_FIELDS = ("model_type", "model_size", "n_params", "n_threads", "n_prompt", "n_gen", "n_depth", "avg_ns",
                      "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts", "cpu_info", "gpu_info",
                      "backends", "build_commit", "test_time")
OURS = ("ttft_ms", "peak_rss_mib", "gbps", "bw_share", "edgegen_version", "versions", "cpu_flags", "excluded")
HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def expected_tests(prompts, gens, pgs, depths) -> set[tuple[int, int, int]]:
    base = [(p, 0) for p in prompts] + [(0, n) for n in gens] + list(pgs)
    return {(p, n, d) for p, n in base for d in depths}


def test_json_has_every_field_and_the_right_tests(json_run):
    rows, _, _ = json_run
    backends = ["native", "llama.cpp"] if HAVE_LLAMA_CPP else ["native"]
    for r in rows:
        missing = [f for f in LLAMA_BENCH_FIELDS + OURS if f not in r]
        assert not missing, f"record lacks {missing}"
    for b in backends:
        for t in (1,):
            got = {(r["n_prompt"], r["n_gen"], r["n_depth"]) for r in rows if r["backends"] == b and r["n_threads"] == t}
            assert got == expected_tests([8], [4], [(8, 4)], [0, 4]), f"{b} at {t} threads"
    labels = {r["test"] for r in rows}
    assert {"pp8", "tg4", "pp8+tg4", "pp8 @ d4", "tg4 @ d4", "pp8+tg4 @ d4"} == labels


def test_json_figures_agree(json_run, tiny_text_gguf):
    rows, _, _ = json_run
    for r in rows:
        n_tokens = r["n_prompt"] + r["n_gen"]
        assert len(r["samples_ns"]) == len(r["samples_ts"]) == 2
        np.testing.assert_allclose(r["samples_ts"], [n_tokens * 1e9 / ns for ns in r["samples_ns"]], rtol=1e-6)
        assert r["avg_ts"] == pytest.approx(statistics.fmean(r["samples_ts"]), rel=1e-9)
        assert r["stddev_ts"] == pytest.approx(statistics.stdev(r["samples_ts"]), rel=1e-9)
        assert r["avg_ns"] == pytest.approx(statistics.fmean(r["samples_ns"]), abs=1)
        assert 0 < r["ttft_ms"] * 1e6 <= max(r["samples_ns"]) + 1
        assert r["peak_rss_mib"] > 0
        assert r["model_size"] == tiny_text_gguf.stat().st_size
        decode = r["n_gen"] > 0 and r["n_prompt"] == 0
        if decode:
            assert r["gbps"] == pytest.approx(r["decode_bytes_per_token"] * r["avg_ts"] / 1e9)
            assert r["bw_share"] == pytest.approx(r["gbps"] / STUB_GBPS)
        else:
            assert r["gbps"] is None and r["bw_share"] is None
    for r in rows:
        base = next(q for q in rows if q["backends"] == "native" and q["test"] == r["test"]
                    and q["n_threads"] == r["n_threads"])
        assert r["ratio"] == pytest.approx(r["avg_ts"] / base["avg_ts"])


def test_traffic_and_params_match_gguf_py(json_run, tiny_text_gguf):
    """Bytes per decoded token and the parameter count against gguf-py's reading of the file."""
    from gguf import GGUFReader
    rows, _, _ = json_run
    tensors = {t.name: t for t in GGUFReader(tiny_text_gguf).tensors}
    embd = tensors["token_embd.weight"]
    weights = sum(int(t.n_bytes) for n, t in tensors.items() if n != "token_embd.weight")
    weights += int(embd.n_bytes) // int(embd.shape[1])           # one row looked up
    if "output.weight" not in tensors:
        weights += int(embd.n_bytes)
    n_params = sum(int(t.n_elements) for t in tensors.values())
    for r in rows:
        assert r["weight_bytes_per_token"] == weights
        assert r["n_params"] == n_params


def test_csv_parses_and_carries_every_field(capsys, tiny_text_gguf):
    status, out, err = run_bench(capsys, [str(tiny_text_gguf), "-p", "8", "-n", "4", "-r", "2", "-t", "1",
                                          "-o", "csv"])
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["test"] for r in rows] == ["pp8", "tg4"]
    for r in rows:
        assert set(TEXT_FIELDS) <= set(r), set(TEXT_FIELDS) - set(r)
        assert float(r["avg_ts"]) > 0 and int(r["avg_ns"]) > 0
        assert r["backends"] == "native" and r["n_threads"] == "1"
    assert float(rows[1]["bw_share"]) == pytest.approx(float(rows[1]["gbps"]) / STUB_GBPS)


def test_markdown_names_the_machine_and_what_is_excluded(capsys, tiny_text_gguf):
    status, out, err = run_bench(capsys, [str(tiny_text_gguf), "-p", "0", "-pg", "4,2", "-n", "0", "-r", "1", "-t", "1"])
    assert status == 0, err
    assert "| pp4+tg2 |" in out
    assert "CPU:" in out and "edgegen commit" in out
    assert "Excluded: model load, tokenization" in out and "sampling (greedy argmax" in out
