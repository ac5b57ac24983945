"""The random-weight demo GGUF the API tests run on (tests/data/demo-tiny-llama.gguf, made by
tools/make_demo_model.py): a 1,024-token byte-level BPE Llama with a ChatML template. Not shipped
in the package: the CLI's default is the trained model (tests/test_bundled_text_model.py)."""
from __future__ import annotations

from pathlib import Path

DEMO_MODEL = Path(__file__).parent / "data" / "demo-tiny-llama.gguf"


def demo_model() -> str:
    return str(DEMO_MODEL)
