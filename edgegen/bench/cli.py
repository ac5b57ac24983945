"""``edgegen bench MODEL [MODEL ...]``: glue only (parse, plan the jobs, collect, print).

edgegen/cli.py registers it with ``add_bench_parser(sub)`` and ``COMMANDS["bench"] = cmd_bench``.

Models: GGUF files and ONNX text exports (text tests), diffusers folders and their ONNX exports
(image tests). An ONNX export given right after a GGUF file (or a diffusers folder) is the same
model in another format: the onnxruntime backend runs the export, the others the first, and the
ratios compare them.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from edgegen.errors import UsageError

TEXT_BACKENDS = ("native", "onnxruntime", "llama.cpp")      # runners.TEXT_BACKENDS (kept numpy-free here)
IMAGE_BACKENDS = ("native", "onnxruntime", "torch")         # image.IMAGE_BACKENDS
FORMATS = ("md", "csv", "json", "jsonl")
SIZE = re.compile(r"^(\d+)[xX](\d+)$")
ONNX_TEXT_MANIFEST = "edgegen-onnx.json"
DIFFUSERS_INDEX = "model_index.json"


def _ints(flag: str, minimum: int = 0):
    def parse(text: str) -> list[int]:
        try:
            values = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, found {text!r}") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, found {text!r}")
        return values
    parse.__name__ = flag
    return parse


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return int(text)


def _pairs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(";") if ";" in text else [text]:
        parts = item.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"expected PROMPT,GEN (e.g. 512,128), found {item!r}")
        out.append((int(parts[0]), int(parts[1])))
    return out


def add_bench_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="measure speed and memory per backend, llama-bench style (text and image models)",
                       usage="edgegen bench MODEL [MODEL ...] [-p 512] [-n 128] [-pg 512,128] [-d 0] [-r 5] "
                             "[-t 1,2] [--backends native,llama.cpp] [-o md|csv|json|jsonl] [--plot out.png]")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="GGUF file or ONNX text export (text); diffusers folder or its ONNX export (image)")
    p.add_argument("-p", "--n-prompt", type=_ints("-p"), default=[512], help="prompt tokens, comma list (0 = no pp test)")
    p.add_argument("-n", "--n-gen", type=_ints("-n"), default=[128], help="generated tokens, comma list (0 = no tg test)")
    p.add_argument("-pg", type=_pairs, action="append", default=[], metavar="PP,TG",
                   help="prompt then generation in one run, one rate over all tokens (repeatable)")
    p.add_argument("-d", "--n-depth", type=_ints("-d"), default=[0], help="tokens already in the KV cache, comma list")
    p.add_argument("-r", "--repetitions", type=_positive, default=5, help="timed repetitions (mean ± sd; default 5)")
    p.add_argument("-t", "--threads", type=_ints("-t", 1), default=None, help="thread counts, comma list (default: all cores)")
    p.add_argument("--backends", default="native", help="comma list, the first is the ratios' base; text: "
                   f"{', '.join(TEXT_BACKENDS)}; image: {', '.join(IMAGE_BACKENDS)} (default native)")
    p.add_argument("-o", "--output", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--steps", type=int, default=20, help="image models: denoising steps (default 20)")
    p.add_argument("--size", default=None, metavar="WxH", help="image models: image size (default: the model's)")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw the sweep to this PNG (needs matplotlib)")
    p.add_argument("--no-warmup", action="store_true", help="time every repetition (default: one warm-up dropped)")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the bandwidth probe (no bw_share)")
    return p


def model_kind(path: str) -> str:
    """"gguf", "onnx-text", "diffusers" or "onnx-image" (an ONNX diffusion export also has model_index.json)."""
    p = Path(path)
    if p.is_file():
        return "gguf"
    if (p / DIFFUSERS_INDEX).is_file():
        from edgegen.diffusion.onnx_components import is_onnx_diffusion_folder
        return "onnx-image" if is_onnx_diffusion_folder(p) else "diffusers"
    if (p / ONNX_TEXT_MANIFEST).is_file():
        return "onnx-text"
    if not p.exists():
        raise UsageError(f"MODEL {path}: no such file or folder")
    raise UsageError(f"MODEL {path}: expected a GGUF file, an ONNX text export ({ONNX_TEXT_MANIFEST}) or a diffusers "
                     f"folder ({DIFFUSERS_INDEX}), found a folder with neither")


def groups(models: list[str]) -> tuple[str, list[dict[str, str]]]:
    """("text" | "image", [{"main": path, "onnx": path}, ...]): an export right after its source joins it."""
    kinds = [model_kind(m) for m in models]
    mode = "image" if kinds[0] in ("diffusers", "onnx-image") else "text"
    out: list[dict[str, str]] = []
    for path, kind in zip(models, kinds):
        if (kind in ("diffusers", "onnx-image")) != (mode == "image"):
            raise UsageError(f"MODEL {path}: a {kind} model in a run of {mode} models; bench text and image models apart")
        if kind.startswith("onnx") and out and "onnx" not in out[-1] and "main" in out[-1]:
            out[-1]["onnx"] = path
        else:
            out.append({"onnx": path} if kind.startswith("onnx") else {"main": path})
    return mode, out


def backends_for(a: argparse.Namespace, mode: str) -> list[str]:
    allowed = IMAGE_BACKENDS if mode == "image" else TEXT_BACKENDS
    names = [b.strip() for b in a.backends.split(",") if b.strip()]
    bad = [b for b in names if b not in allowed]
    if bad or not names or len(set(names)) != len(names):
        raise UsageError(f"--backends: expected distinct names from {', '.join(allowed)} for {mode} models, "
                         f"found {a.backends!r}")
    return names


def text_tests(a: argparse.Namespace) -> list[tuple[int, int, int]]:
    """(n_prompt, n_gen, n_depth) in llama-bench's order: pp tests, tg tests, pg tests, at each depth."""
    base = [(p, 0) for p in a.n_prompt if p] + [(0, n) for n in a.n_gen if n] + [pg for item in a.pg for pg in item]
    if not base:
        raise UsageError("no test to run: -p 0 and -n 0 without -pg; give -p N, -n N or -pg PP,TG")
    return [(p, n, d) for d in a.n_depth for p, n in base]


def image_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = SIZE.match(text)
    if not m:
        raise UsageError(f"--size: expected WIDTHxHEIGHT, e.g. 512x512, found '{text}'")
    return int(m.group(1)), int(m.group(2))


def plan(a: argparse.Namespace, mode: str, model_groups: list[dict], backends: list[str], threads: list[int]):
    """The jobs (one child each) and the number of progress steps they report."""
    common = dict(kind=mode, threads=threads, reps=a.repetitions, no_warmup=a.no_warmup)
    if mode == "text":
        common["tests"] = text_tests(a)
    else:
        if a.steps < 1:
            raise UsageError(f"--steps: expected a positive integer, found {a.steps}")
        common.update(steps=a.steps, size=image_size(a.size))
    jobs = []
    for i, g in enumerate(model_groups):
        for b in backends:
            model = g["onnx"] if (b == "onnxruntime" and "onnx" in g) or "main" not in g else g["main"]
            jobs.append(dict(common, group=i, backend=b, model=str(Path(model).resolve()), label=Path(model).name))
    per_job = len(threads) * common["reps"] * (len(common["tests"]) if mode == "text" else 1)
    return jobs, per_job * len(jobs)


def cmd_bench(a: argparse.Namespace) -> None:
    from edgegen.bench import report
    mode, model_groups = groups(a.models)
    backends = backends_for(a, mode)
    from edgegen.bench.sysinfo import cores
    threads = a.threads or [cores()]
    jobs, total = plan(a, mode, model_groups, backends, threads)
    if a.plot:
        from edgegen.bench.plot import _pyplot
        _pyplot()                      # a missing matplotlib fails now, not after the measurements
    report.run_and_print(jobs, total, mode, backends, threads, a, out=sys.stdout)
