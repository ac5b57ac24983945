"""Seconds per denoising step and peak memory: native, onnxruntime and diffusers (PyTorch), one run.

    python benchmarks/bench_diffusion.py [--shapes small,sd15] [--threads 2] [--reps 3]

For each shape (benchmarks/diffusion_models.py: a whole random-weight SD pipeline, fixed seed),
each backend runs in a fresh process: ``load_pipeline(folder, backend)``, then one text-to-image
generation at the shape's latent size with the Euler scheduler and classifier-free guidance, so
every step is the UNet on a batch of two (uncond + cond, text states (2, 77, 768)) and the guided
update (edgegen's fused kernel for native and onnxruntime; the scheduler's own step for the
PyTorch reference). Reported: seconds per step over steps 2..n (mean ± sd; the first step,
which warms caches, apart), the text encoding and the VAE decode, and the process's peak
resident set (VmHWM) over the whole generation, weights included as each backend holds them.
Excluded: loading (reported apart). The ONNX folder is exported once by ``edgegen convert``'s
exporter (fp32) into the cache.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from edgegen.bench import spawn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffusion_models as dm  # noqa: E402

BACKENDS = ("native", "onnxruntime", "torch")

def onnx_folder(shape: dm.UNetShape, cache_dir: Path) -> Path:
    src = dm.build_sd(shape, cache_dir)
    out = src.parent / (src.name + "-onnx-fp32")
    if not (out / "edgegen-onnx.json").is_file():
        from edgegen.converters.diffusers_onnx import export_diffusers_onnx
        export_diffusers_onnx(src, out, quant="fp32", progress=True)
    return out


def run_case(folder: Path, backend: str, threads: int, reps: int, latent: int) -> dict:
    """One image of ``reps + 1`` steps in a fresh process (edgegen.bench's child, as ``edgegen bench``
    runs it); the first step apart, as a warm-up."""
    job = dict(kind="image", backend=backend, model=str(folder), threads=[threads], reps=1, no_warmup=True,
               steps=reps + 1, size=[latent * dm.VAE_FACTOR] * 2, group=0, label=folder.name)
    for event in spawn.run_child(job):
        if "error" in event:
            return {"error": event["error"]}
        if "result" in event:
            r = event["result"]
            steps = r["samples_step_s"]
            return {"first": steps[0], "steps": steps[1:], "load": r["load_s"], "encode": r["encode_s"],
                    "decode": r["decode_s"], "rss_kib": r["peak_rss_mib"] * 1024}
    return {"error": "no result"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="small", help=f"comma list of {', '.join(dm.UNET_SHAPES)}")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cache-dir", type=Path, default=dm.DEFAULT_CACHE_DIR)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    print(f"{args.threads} threads, batch 2 (guidance), {args.reps} timed steps after one warm-up\n")
    print("| shape | latent | backend | s/step | speed vs onnxruntime | first step s | text s | VAE decode s | load s "
          "| peak RSS MiB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.shapes.split(","):
        shape = dm.UNET_SHAPES[name]
        results = {}
        for backend in args.backends.split(","):
            folder = onnx_folder(shape, args.cache_dir) if backend == "onnxruntime" else dm.build_sd(shape, args.cache_dir)
            results[backend] = res = run_case(folder, backend, args.threads, args.reps, shape.latent)
            rows.append(dict(shape=name, backend=backend, **res))
        base = results.get("onnxruntime", {}).get("steps")
        for backend, res in results.items():
            if "error" in res:
                print(f"| {name} | {shape.latent} | {backend} | failed: {res['error']} |||||||")
                continue
            mean = statistics.mean(res["steps"])
            sd = statistics.stdev(res["steps"]) if len(res["steps"]) > 1 else 0.0
            ratio = f"{statistics.mean(base) / mean:.2f}x" if base else "-"
            print(f"| {name} | {shape.latent}x{shape.latent} | {backend} | {mean:.3f} ± {sd:.3f} | {ratio} | "
                  f"{res['first']:.2f} | {res['encode']:.2f} | {res['decode']:.2f} | {res['load']:.1f} | "
                  f"{res['rss_kib'] / 1024:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
