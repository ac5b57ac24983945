"""Evaluate the text model trained by tools/train_text.py, through edgegen.

    python tools/eval_text.py --model /tmp/text-model            # writes /tmp/text-model/eval.json

1. Held-out perplexity: the held-out chapters (held-out.txt, never trained on) are tokenized with
   the model's own tokenizer.json (edgegen's GGUF tokenizer is checked to agree), packed as
   EOT c1 EOT c2 EOT ... and cut into non-overlapping windows of ``--ctx`` tokens; each window
   is run teacher-forced through ``model.logits(ids)`` of the Q8_0 GGUF, and every token after a
   window's first is scored. Perplexity = exp(mean negative log-likelihood).
2. Unigram baseline on the same scored tokens: token frequencies of the packed training split
   (hf/ tokenizer, training chapters re-derived with the same seed), add-one smoothing over the
   vocabulary.
3. Samples: greedy and sampled (temperature 0.8, top-k 40, seeds 0 and 1) continuations of a
   few prompts, each prompt preceded by EOT as every training chapter is.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from train_text import EOT, find_kjv, pack, read_chapters, split_docs  # noqa: E402

PROMPTS = ["Once upon a time", "In the beginning", "And the king said", "Blessed are the"]


def packed_ids(tok, texts: list[str]) -> np.ndarray:
    """EOT t1 EOT t2 EOT ... exactly as training packed them (train_text.pack), as int64."""
    return pack(tok, texts).astype(np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def model_nll(model, ids: np.ndarray, ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """Negative log-likelihoods of every scored token and the scored token ids."""
    nll, targets = [], []
    for start in range(0, len(ids) - 1, ctx):
        window = ids[start:start + ctx]
        if len(window) < 2:
            break
        lp = log_softmax(model.logits(window.tolist()))
        nll.append(-lp[np.arange(len(window) - 1), window[1:]])
        targets.append(window[1:])
    return np.concatenate(nll), np.concatenate(targets)


def unigram_nll(train_ids: np.ndarray, targets: np.ndarray, vocab: int) -> np.ndarray:
    counts = np.bincount(train_ids, minlength=vocab).astype(np.float64) + 1.0
    return -np.log(counts[targets] / counts.sum())


def samples(model, eot: int, max_tokens: int) -> list[dict]:
    out = []
    settings = [("greedy", None, {})] + [(f"t0.8 k40 seed {s}", s, {"temperature": 0.8, "top_k": 40}) for s in (0, 1)]
    for prompt in PROMPTS:
        ids = [eot] + model.tokenizer.encode(prompt, add_bos=False)
        for label, seed, params in settings:
            text = "".join(t.text for t in model.generate(ids, max_tokens, seed=seed, **params))
            out.append({"prompt": prompt, "mode": label, "text": prompt + text})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/tmp/text-model", help="the --out folder of tools/train_text.py")
    ap.add_argument("--gguf", default="text-q8_0.gguf")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=60)
    args = ap.parse_args()
    import edgegen
    from tokenizers import Tokenizer
    root = Path(args.model)
    record = json.loads((root / "train_record.json").read_text())
    tok = Tokenizer.from_file(str(root / "hf" / "tokenizer.json"))
    held = (root / "held-out.txt").read_text(encoding="utf-8").rstrip("\n").split("\n%\n")
    train_q, held_check = split_docs(read_chapters(find_kjv(record["recipe"].get("kjv"))), record["recipe"]["seed"])
    assert held_check == held, "held-out.txt does not match the split re-derived from the recipe's seed"
    model = edgegen.load(root / args.gguf, threads=args.threads)
    for text in held[:50]:
        assert model.tokenizer.encode(text, add_bos=False) == tok.encode(text).ids, f"tokenizers disagree on {text!r}"

    t0 = time.time()
    nll, targets = model_nll(model, packed_ids(tok, held), args.ctx)
    uni = unigram_nll(packed_ids(tok, train_q), targets, tok.get_vocab_size())
    result = {"held_out_chapters": len(held), "scored_tokens": int(len(targets)),
              "model_ppl": math.exp(nll.mean()), "model_nll": float(nll.mean()),
              "unigram_ppl": math.exp(uni.mean()), "unigram_nll": float(uni.mean()),
              "eval_seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=2))
    result["samples"] = samples(model, tok.token_to_id(EOT), args.max_tokens)
    for s in result["samples"]:
        print(f"--- {s['prompt']!r} [{s['mode']}]\n{s['text']}")
    (root / "eval.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
