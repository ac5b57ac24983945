"""Make the random-weight demo model the API tests run on, tests/data/demo-tiny-llama.gguf.

    python tools/make_demo_model.py            # needs the test extra (torch, transformers)

A tiny random-weight Llama (fixed seed) with a byte-level BPE tokenizer trained on
tests/data/corpus.txt, converted to Q8_0 by edgegen's own converter. Its text is gibberish
(the weights are random); the API tests (sampling, structured output, chat templates) use it
because it is small and has a ChatML template. The package's default text model is the trained
one (tools/train_text.py, docs/models/text.md).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import make_tiny_hf  # noqa: E402

from edgegen.converters.hf_to_gguf import convert_hf_to_gguf  # noqa: E402

OUT = ROOT / "tests" / "data" / "demo-tiny-llama.gguf"
SHAPE = dict(hidden=128, layers=4, heads=4, kv_heads=2, ffn=384, vocab=1024, max_pos=1024)
SEED = 0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = make_tiny_hf(Path(tmp) / "demo-tiny-llama", arch="llama", tokenizer="bpe", seed=SEED, **SHAPE)
        report = convert_hf_to_gguf(hf_dir, OUT, "q8_0", progress=False)
    print(report.summary().splitlines()[0])


if __name__ == "__main__":
    main()
