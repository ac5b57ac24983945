"""Shared fixtures: tiny random-weight Hugging Face models, converted to GGUF once per session."""
from __future__ import annotations

import os

# numba reads this when it is first imported: the CUDA kernels (tests/cuda) run on its CPU simulator
# unless EDGEGEN_TEST_REAL_CUDA=1 asks for a real GPU. It changes nothing for numba's CPU target.
if os.environ.get("EDGEGEN_TEST_REAL_CUDA") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from pathlib import Path  # noqa: E402

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """Build (once) and return the folder of a tiny HF model: tiny_hf(arch, tokenizer, tied=False)."""
    from tiny_models import make_tiny_hf
    made: dict[tuple, Path] = {}

    def get(arch: str = "llama", tokenizer: str = "bpe", tied: bool = False) -> Path:
        key = (arch, tokenizer, tied)
        if key not in made:
            out = tmp_path_factory.mktemp(f"hf-{arch}-{tokenizer}-{'tied' if tied else 'untied'}")
            made[key] = make_tiny_hf(out, arch=arch, tokenizer=tokenizer, seed=0, tie_embeddings=tied)
        return made[key]
    return get


@pytest.fixture(scope="session")
def tiny_gguf(tiny_hf, tmp_path_factory):
    """Convert (once) a tiny HF model: tiny_gguf(arch, quant, tokenizer="bpe", tied=False) -> .gguf path."""
    from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
    made: dict[tuple, Path] = {}

    def get(arch: str = "llama", quant: str = "f32", tokenizer: str = "bpe", tied: bool = False) -> Path:
        key = (arch, quant, tokenizer, tied)
        if key not in made:
            out = tmp_path_factory.mktemp("gguf") / f"{arch}-{tokenizer}-{quant}{'-tied' if tied else ''}.gguf"
            convert_hf_to_gguf(tiny_hf(arch, tokenizer, tied), out, quant=quant, progress=False)
            made[key] = out
        return made[key]
    return get
