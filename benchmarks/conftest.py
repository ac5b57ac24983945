"""Fixtures for the pytest-benchmark suite: cached GGUF files, engines, the llama.cpp reference.

Run explicitly (the default ``pytest`` run only collects tests/):

    pytest benchmarks/ --benchmark-only                        # SmolLM-135M shapes
    EDGEGEN_BENCH_LARGE=1 pytest benchmarks/ --benchmark-only  # and TinyLlama-1.1B (slow)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # models.py, engines.py, ... by plain name

import bandwidth  # noqa: E402
import engines  # noqa: E402
import models  # noqa: E402

REFERENCE_THREADS = 1
N_CTX = engines.DEFAULT_PROMPT + engines.DEFAULT_DECODE


@pytest.fixture(scope="session")
def gguf_path():
    """gguf_path(model, quant) -> the cached GGUF file, built on first use."""
    def get(model: str, quant: str) -> Path:
        return models.build_gguf(models.shape_for(model), quant)
    return get


@pytest.fixture(scope="session")
def prompt_for():
    """prompt_for(model) -> the fixed random prompt ids for that model's vocabulary."""
    def get(model: str) -> list[int]:
        return engines.random_prompt(models.shape_for(model).vocab, engines.DEFAULT_PROMPT, engines.PROMPT_SEED)
    return get


@pytest.fixture
def runner(request, gguf_path):
    """The engine for this test's (engine, model, quant, threads) parameters; closed afterwards."""
    p = request.node.callspec.params
    if p["engine"] == engines.LLAMA_CPP:
        pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'edgegen[llamacpp]'")
    r = engines.open_runner(p["engine"], gguf_path(p["model"], p["quant"]), p["threads"], N_CTX)
    yield r
    r.close()


def _need_llama_cpp() -> None:
    pytest.importorskip("llama_cpp", reason="the peer engine llama-cpp-python is the benchmark's oracle: "
                                            "pip install 'edgegen[llamacpp]'")


@pytest.fixture(scope="session")
def reference_logits(gguf_path, prompt_for):
    """reference_logits(model, quant) -> llama.cpp's (vocab,) logits after the prompt: the oracle."""
    made: dict[tuple[str, str], np.ndarray] = {}

    def get(model: str, quant: str) -> np.ndarray:
        _need_llama_cpp()
        if (model, quant) not in made:
            r = engines.open_runner(engines.LLAMA_CPP, gguf_path(model, quant), REFERENCE_THREADS, N_CTX)
            try:
                made[model, quant] = np.array(r.eval(prompt_for(model)), dtype=np.float32)
            finally:
                r.close()
        return made[model, quant]
    return get


@pytest.fixture(scope="session")
def token_check(gguf_path, prompt_for):
    """token_check(model, quant, tokens) -> engines.TokenCheck: greedy tokens scored by llama.cpp."""
    made: dict[tuple, engines.TokenCheck] = {}

    def get(model: str, quant: str, tokens: tuple[int, ...]) -> engines.TokenCheck:
        _need_llama_cpp()
        key = (model, quant, tokens)
        if key not in made:
            made[key] = engines.check_tokens(gguf_path(model, quant), prompt_for(model), tokens, REFERENCE_THREADS)
        return made[key]
    return get


@pytest.fixture(scope="session")
def read_bandwidth():
    """read_bandwidth(threads) -> GB/s measured once per thread count."""
    made: dict[int, float] = {}

    def get(threads: int) -> float:
        if threads not in made:
            made[threads] = bandwidth.read_bandwidth(threads)
        return made[threads]
    return get
