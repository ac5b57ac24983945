"""Seconds per denoising step and peak memory: native, onnxruntime and diffusers (PyTorch), one run.

    python benchmarks/bench_diffusion.py [--shapes small,sd15] [--threads 2] [--reps 3]

For each UNet shape (benchmarks/diffusion_models.py: random weights, fixed seed), each backend
runs in a fresh process through the pipeline's component loaders and times one denoising step
with classifier-free guidance: the UNet on a batch of two (uncond + cond latents, (2, 4, L, L)
float32, text states (2, 77, 768)) then the guided scheduler update (Euler's coefficients; the
fused kernel for native and onnxruntime, NumPy for PyTorch as diffusers does it in torch). One
warm-up step, then ``--reps`` timed steps, mean ± sd; then the process's peak resident set
(VmHWM), which includes the weights as each backend holds them. Excluded: loading, the text
encoder and the VAE. The ONNX model is exported once by edgegen's exporter into the cache.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffusion_models as dm  # noqa: E402

BACKENDS = ("native", "onnxruntime", "torch")

CHILD = r"""
import json, sys, time
import numpy as np
folder, backend, threads, reps, latent = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if backend == "native":
    from edgegen.diffusion.native import load_native_components as load
elif backend == "onnxruntime":
    from edgegen.diffusion.onnx_components import load_onnx_components as load
else:
    from edgegen.diffusion.torch_components import load_torch_components as load
from edgegen.diffusion.loop import guided_update_numpy
from edgegen.schedulers import make_scheduler
unet = load(folder, threads=threads)["unet"]
update = guided_update_numpy
if backend != "torch":
    from edgegen.kernels import _cpp
    def update(x, u, c, s, cx, co, noise, cn):
        out = np.empty_like(x); _cpp.guided_update(x, u, c, s, cx, co, noise, cn, out, threads); return out
rng = np.random.default_rng(0)
sched = make_scheduler("euler")
sched.set_timesteps(reps + 1)
x = rng.standard_normal((1, 4, latent, latent)).astype(np.float32) * np.float32(sched.init_noise_sigma)
text = rng.standard_normal((2, 77, unet.cross_attention_dim)).astype(np.float32)
times = []
for t in sched.timesteps:
    t0 = time.perf_counter()
    x_in = sched.scale_model_input(x, t).astype(np.float32)
    both = unet(np.concatenate([x_in, x_in]), t, text)
    c = sched.step_coefficients(t)
    x = update(x, both[:1], both[1:], 7.5, c.cx, c.cout, None, 0.0)
    times.append(time.perf_counter() - t0)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"first": times[0], "steps": times[1:], "rss_kib": int(hwm.split()[1]),
                  "finite": bool(np.isfinite(x).all())}))
"""


def onnx_folder(shape: dm.UNetShape, cache_dir: Path) -> Path:
    src = dm.build_unet(shape, cache_dir)
    out = src.parent / (src.name + "-onnx-fp32")
    if not (out / "edgegen-onnx.json").is_file():
        from edgegen.converters.diffusers_onnx import export_diffusers_onnx
        export_diffusers_onnx(src, out, quant="fp32", progress=True)
    return out


def run_case(folder: Path, backend: str, threads: int, reps: int, latent: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(folder), backend, str(threads), str(reps), str(latent)],
                       capture_output=True, text=True)
    if r.returncode:
        lines = r.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


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
    print("| UNet | latent | backend | s/step | first step s | vs onnxruntime | peak RSS MiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.shapes.split(","):
        shape = dm.UNET_SHAPES[name]
        results = {}
        for backend in args.backends.split(","):
            folder = onnx_folder(shape, args.cache_dir) if backend == "onnxruntime" else dm.build_unet(shape, args.cache_dir)
            results[backend] = res = run_case(folder, backend, args.threads, args.reps, shape.latent)
            rows.append(dict(shape=name, backend=backend, **res))
        base = results.get("onnxruntime", {}).get("steps")
        for backend, res in results.items():
            if "error" in res:
                print(f"| {name} | {shape.latent} | {backend} | failed: {res['error']} ||||")
                continue
            mean = statistics.mean(res["steps"])
            sd = statistics.stdev(res["steps"]) if len(res["steps"]) > 1 else 0.0
            ratio = f"{statistics.mean(base) / mean:.2f}x" if base else "-"
            print(f"| {name} | {shape.latent}x{shape.latent} | {backend} | {mean:.3f} ± {sd:.3f} | {res['first']:.2f} | "
                  f"{ratio} | {res['rss_kib'] / 1024:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
