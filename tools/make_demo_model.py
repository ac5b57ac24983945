"""Make the bundled demo model, edgegen/data/demo-tiny-llama.gguf.

    python tools/make_demo_model.py            # needs the test extra (torch, transformers)

A tiny random-weight Llama (fixed seed) with a byte-level BPE tokenizer trained on
tests/data/corpus.txt, converted to Q8_0 by edgegen's own converter: the file the README's
first quickstart command generates with. Its text is gibberish (the weights are random);
it exists so that a fresh install runs the whole path (load, tokenize, prefill, decode,
detokenize) with nothing downloaded.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import make_tiny_hf  # noqa: E402

from edgegen.converters.hf_to_gguf import convert_hf_to_gguf  # noqa: E402

OUT = ROOT / "edgegen" / "data" / "demo-tiny-llama.gguf"
SHAPE = dict(hidden=128, layers=4, heads=4, kv_heads=2, ffn=384, vocab=1024, max_pos=1024)
SEED = 0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = make_tiny_hf(Path(tmp) / "demo-tiny-llama", arch="llama", tokenizer="bpe", seed=SEED, **SHAPE)
        report = convert_hf_to_gguf(hf_dir, OUT, "q8_0", progress=False)
    print(report.summary().splitlines()[0])


if __name__ == "__main__":
    main()
