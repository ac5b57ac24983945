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
compare within one run on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

CASES = [("native", "f16"), ("native", "q8_0"), ("native", "q4_0"),
         ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("onnxruntime", "int4"), ("llama.cpp", "q8_0")]

CHILD = r"""
import json, sys, time
import numpy as np
import edgegen
path, backend, threads, n_prompt, n_decode, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
model = edgegen.load(path, backend=backend, threads=threads, n_ctx=n_prompt + n_decode + 8)
prompt = np.random.default_rng(0).integers(0, model.tokenizer.vocab_size, n_prompt).tolist()
pp, tg = [], []
for rep in range(reps + 1):
    s = model.new_session()
    t0 = time.perf_counter(); logits = s.eval(prompt); t1 = time.perf_counter()
    for _ in range(n_decode):
        logits = s.eval([int(np.argmax(logits))])
    t2 = time.perf_counter()
    if rep:
        pp.append(n_prompt / (t1 - t0)); tg.append(n_decode / (t2 - t1))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"pp": pp, "tg": tg, "rss_kib": int(hwm.split()[1])}))
"""


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
        r = subprocess.run([sys.executable, "-c", CHILD, str(path), backend, str(args.threads), str(args.prompt),
                            str(args.decode), str(args.reps)], capture_output=True, text=True)
        if r.returncode:
            print(f"| {backend} | {quant} | failed: {r.stderr.strip().splitlines()[-1]} |||||")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
        row = dict(backend=backend, format=quant, disk_mib=disk_mib(path), pp=res["pp"], tg=res["tg"],
                   rss_mib=res["rss_kib"] / 1024)
        rows.append(row)
        print(f"| {backend} | {quant} | {row['disk_mib']:.1f} | {statistics.mean(res['pp']):.1f} ± {sd(res['pp']):.1f} | "
              f"{statistics.mean(res['tg']):.1f} ± {sd(res['tg']):.1f} | {row['rss_mib']:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
