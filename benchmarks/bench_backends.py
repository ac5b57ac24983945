"""The three backends behind one API, side by side: native (GGUF), onnxruntime (ONNX), llama.cpp.

    python benchmarks/bench_backends.py [--model smollm] [--threads 2] [--reps 3]

For the SmolLM-135M shape (random weights, benchmarks/models.py), each case runs in a fresh
process through ``edgegen.load(path, backend=...)`` and one session's ``eval``: prompt
processing (pp: 128 random tokens in one call) and greedy decode (tg: 64 single-token calls,
``np.argmax`` on the logits, no sampler), one warm-up then ``--reps`` timed runs, mean ± sd;
then the process's peak resident set (VmHWM). Cases: native F16 / Q8_0 / Q4_0, onnxruntime
fp32 / int8 / int4 (exported once by ``edgegen convert --to onnx`` into the model cache) and
llama.cpp Q8_0. Size on disk: the GGUF file, or every file of the ONNX folder. Excluded: load,
KV-cache allocation, tokenization, sampling. Runs alternate nothing (one process per case), so
compare within one run on a quiet machine. Each case is edgegen.bench's child process (the one
``edgegen bench`` runs), so the timing loop exists once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgegen.bench import spawn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

CASES = [("native", "f16"), ("native", "q8_0"), ("native", "q4_0"),
         ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("onnxruntime", "int4"), ("llama.cpp", "q8_0")]



def measure(backend: str, path: Path, args) -> dict:
    """One fresh process (edgegen.bench's child, as ``edgegen bench`` runs it): pp and tg results or an error."""
    job = dict(kind="text", backend=backend, model=str(path), threads=[args.threads], reps=args.reps,
               tests=[(args.prompt, 0, 0), (0, args.decode, 0)], group=0, label=path.name)
    found = {"results": []}
    for event in spawn.run_child(job):
        if "error" in event:
            return {"error": event["error"]}
        if "result" in event:
            found["results"].append(event["result"])
    return found


def artifact(backend: str, quant: str, shape, cache: Path) -> Path:
    if backend != "onnxruntime":
        return models.build_gguf(shape, quant, cache)
    out = models.model_dir(shape, cache) / f"onnx-{quant}"
    if not (out / "edgegen-onnx.json").is_file():
        from edgegen.converters.onnx_export import export_onnx
        export_onnx(models.build_hf(shape, cache), out, quant=quant, progress=True)
    return out


def disk_mib(path: Path) -> float:
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm", choices=sorted(models.SHAPES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--cache-dir", type=Path, default=models.DEFAULT_CACHE_DIR)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    shape = models.shape_for(args.model)
    rows = []
    print(f"{args.model}, {args.threads} threads, pp{args.prompt} / tg{args.decode}, {args.reps} reps\n")
    print("| backend | format | MiB on disk | pp t/s | tg t/s | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for backend, quant in CASES:
        path = artifact(backend, quant, shape, args.cache_dir)
        res = measure(backend, path, args)
        if "error" in res:
            print(f"| {backend} | {quant} | failed: {res['error']} |||||")
            continue
        pp, tg = res["results"]
        row = dict(backend=backend, format=quant, disk_mib=disk_mib(path), pp=pp["samples_ts"], tg=tg["samples_ts"],
                   rss_mib=max(pp["peak_rss_mib"], tg["peak_rss_mib"]))
        rows.append(row)
        print(f"| {backend} | {quant} | {row['disk_mib']:.1f} | {pp['avg_ts']:.1f} ± {pp['stddev_ts']:.1f} | "
              f"{tg['avg_ts']:.1f} ± {tg['stddev_ts']:.1f} | {row['rss_mib']:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
