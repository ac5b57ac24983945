"""``edgegen perplexity MODEL --file TEXT``: llama-perplexity's measure on any backend (edgegen/perplexity.py)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgegen.errors import UsageError

DEFAULT_CTX = 512


def add_perplexity_parser(sub) -> None:
    from edgegen.backends import BACKENDS
    p = sub.add_parser("perplexity", help="perplexity of a text file, measured as llama.cpp's llama-perplexity does",
                       usage="edgegen perplexity MODEL --file TEXT [--ctx 512] [--backend B] [--threads N]")
    p.add_argument("model", help="a .gguf file, or an ONNX export folder with --backend onnxruntime")
    p.add_argument("--file", "-f", required=True, help="UTF-8 text to score")
    p.add_argument("--ctx", "-c", type=int, default=DEFAULT_CTX,
                   help=f"window size in tokens; the second half of each window is scored (default {DEFAULT_CTX})")
    p.add_argument("--backend", choices=tuple(BACKENDS), default="native", help="which engine computes the logits")
    p.add_argument("--threads", "-t", type=int, default=None, help="CPU threads (default: all cores)")


def cmd_perplexity(a: argparse.Namespace) -> None:
    import edgegen
    from edgegen.perplexity import nll_per_window, summarize
    try:
        text = Path(a.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--file: cannot read {a.file} as UTF-8 text: {e}") from None
    model = edgegen.load(a.model, backend=a.backend, threads=a.threads, n_ctx=a.ctx)
    ids = model.tokenizer.encode(text)
    start = time.perf_counter()
    nlls = []
    for nll in nll_per_window(model, ids, a.ctx):
        nlls.append(nll)
        running = summarize(nlls, a.ctx)
        print(f"[{len(nlls)}/{len(ids) // a.ctx}] {running.window_ppls[-1]:.4f} (running PPL {running.ppl:.4f})",
              file=sys.stderr, flush=True)
    result = summarize(nlls, a.ctx)
    print(result.summary())
    print(f"[{len(ids)} tokens in {a.file}, {a.backend} backend, {model.threads} threads, "
          f"{time.perf_counter() - start:.1f} s]", file=sys.stderr)
