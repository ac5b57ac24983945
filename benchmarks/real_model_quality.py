"""Perplexity of SmolLM2-135M-Instruct and of edgegen's conversions of it, beside llama.cpp's.

    nice -n 10 python benchmarks/real_model_quality.py /work/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out /tmp/smollm2-conv [--ctx 512] [--onnx int8,fp32] [--threads 2]

1. converts the GGUF (skipping files already there): F16 / Q8_0 / Q4_0 with ``edgegen convert
   MODEL.gguf OUT.gguf --quant ...`` and ONNX exports with ``--to onnx --quant ...``;
2. tokenizes tests/data/apache-2.0.txt with edgegen's tokenizer (checked equal to llama.cpp's);
3. measures perplexity as llama-perplexity does (edgegen/perplexity.py: windows of ``ctx`` tokens,
   second half scored) with edgegen (native backend for GGUF, onnxruntime for ONNX) and, for each
   GGUF, with llama.cpp's logits through llama-cpp-python (logits_all=True) on the same windows;
4. prints a Markdown table (the one in benchmarks/RESULTS.md).
Each measurement is one pass: the windows are fixed, so a second pass gives the same numbers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import edgegen
from edgegen.backends.llamacpp import open_llama
from edgegen.cli import main as edgegen_main
from edgegen.perplexity import PerplexityResult, summarize, window_nll, windows

TEXT = Path(__file__).resolve().parent.parent / "tests" / "data" / "apache-2.0.txt"
GGUF_QUANTS = ("f16", "q8_0", "q4_0")
GGML_TYPE_F32 = 0   # llama.cpp's KV cache in float32, as edgegen's


def convert(model: Path, out: Path, onnx_quants: list[str]) -> dict[str, Path]:
    """label -> converted file or folder (made with edgegen's CLI when missing)."""
    made = {"Q4_1 (original)": model}
    for quant in GGUF_QUANTS:
        path = out / f"smollm2-{quant}.gguf"
        if not path.exists():
            assert edgegen_main(["convert", str(model), str(path), "--quant", quant, "--quiet"]) == 0
        made[f"{quant.upper()} (requantized)"] = path
    for quant in onnx_quants:
        path = out / f"smollm2-onnx-{quant}"
        if not path.exists():
            assert edgegen_main(["convert", str(model), str(path), "--to", "onnx", "--quant", quant, "--quiet"]) == 0
        made[f"ONNX {quant}"] = path
    return made


def edgegen_ppl(path: Path, ids: list[int], ctx: int, threads: int) -> tuple[PerplexityResult, float]:
    from edgegen.perplexity import perplexity
    backend = "onnxruntime" if path.is_dir() else "native"
    model = edgegen.load(path, backend=backend, threads=threads, n_ctx=ctx)
    start = time.perf_counter()
    return perplexity(model, ids, ctx), time.perf_counter() - start


def llama_cpp_ppl(path: Path, ids: list[int], ctx: int, threads: int,
                  bos: int | None) -> tuple[PerplexityResult, float]:
    """The same windows and scoring, llama.cpp's logits (float32 KV cache as edgegen's)."""
    llm = open_llama(path, n_ctx=ctx, n_batch=ctx, n_threads=threads, n_threads_batch=threads,
                          logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False,
                          verbose=False)
    start = time.perf_counter()
    nlls = []
    for win in windows(ids, ctx, bos):
        llm.reset()
        llm.eval(win.tolist())
        nlls.append(window_nll(np.array(llm.scores[:ctx], dtype=np.float32), win))
    return summarize(nlls, ctx), time.perf_counter() - start


def check_tokenization(model: Path, text: str, ids: list[int]) -> str:
    import llama_cpp
    llm = llama_cpp.Llama(str(model), n_ctx=16, vocab_only=True, verbose=False)
    theirs = llm.tokenize(text.encode("utf-8"), add_bos=llm._model.add_bos_token(), special=False)
    return "identical" if theirs == ids else f"DIFFERENT ({len(theirs)} vs {len(ids)} tokens)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, default=Path("/tmp/smollm2-conv"))
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--onnx", default="int8", help="comma-separated ONNX quants to export and measure ('' for none)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    made = convert(a.model, a.out, [q for q in a.onnx.split(",") if q])
    text = TEXT.read_text(encoding="utf-8")
    ref = edgegen.load(a.model, threads=a.threads, n_ctx=a.ctx)
    ids = ref.tokenizer.encode(text)
    bos = ref.tokenizer.bos_id if ref.tokenizer.add_bos else None
    same = check_tokenization(a.model, text, ids)
    print(f"text: {TEXT.name}, {len(ids)} tokens (tokenization vs llama.cpp: {same}); "
          f"ctx {a.ctx}, BOS per window: {'yes' if bos is not None else 'no'}", file=sys.stderr)
    rows = ["| model | size (MB) | edgegen PPL | llama.cpp PPL | edgegen / llama.cpp | edgegen s | llama.cpp s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for label, path in made.items():
        size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
        ours, t_ours = edgegen_ppl(path, ids, a.ctx, a.threads)
        if not path.is_dir():
            theirs, t_theirs = llama_cpp_ppl(path, ids, a.ctx, a.threads, bos)
            peer = (f"| {theirs.ppl:.4f} ± {theirs.stderr:.4f} | {ours.ppl / theirs.ppl:.6f} | {t_ours:.1f} "
                    f"| {t_theirs:.1f} |")
        else:
            peer = f"| - | - | {t_ours:.1f} | - |"
        rows.append(f"| {label} | {size / 1e6:.1f} | {ours.ppl:.4f} ± {ours.stderr:.4f} {peer}")
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"\n{ours.n_windows} windows of {a.ctx} tokens, {ours.n_scored} tokens scored\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
