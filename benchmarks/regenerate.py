"""Regenerate the measured tables of benchmarks/RESULTS.md with ``edgegen bench``, machine description included.

    python benchmarks/regenerate.py                       # about an hour on 2 cores: run on a quiet machine
    python benchmarks/regenerate.py --text smollm --quants q8_0 --image small --threads 2 -r 2   # a quick subset
    python benchmarks/regenerate.py --gguf m.gguf --sd sd-folder --results /tmp/R.md            # your own files

Builds (and caches) the random-weight models with the shapes of SmolLM-135M and TinyLlama-1.1B
(models.py) and the SD-shaped pipelines (diffusion_models.py, plus their ONNX export when the
onnxruntime backend is asked for), runs ``edgegen bench`` on them (text: pp, tg and pp+tg; image:
seconds per step and per image) and writes the markdown it prints between the two marker lines
of RESULTS.md (BEGIN and END below), leaving the rest of the file as it is. The file is
replaced atomically.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BEGIN = "<!-- regenerate.py: begin (generated, do not edit by hand) -->"
END = "<!-- regenerate.py: end -->"
RESULTS = HERE / "RESULTS.md"


def bench_markdown(models: list[str], options: list[str]) -> str:
    """``edgegen bench MODELS OPTIONS -o md``'s output (progress and skipped backends go to stderr)."""
    cmd = [sys.executable, "-m", "edgegen", "bench", *[str(Path(m).resolve()) for m in models], *options, "-o", "md"]
    # from a neutral folder: `-m` run in the repository root would import its edgegen/ source tree
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    if r.returncode:
        raise SystemExit(f"edgegen bench failed (exit {r.returncode}): {shlex.join(cmd)}")
    return r.stdout.strip()


def section(command: str, parts: list[tuple[str, str]]) -> str:
    """The generated block: when and how, then each titled table."""
    lines = [BEGIN, "", f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by", "", "```sh",
             command, "```"]
    for title, md in parts:
        lines += ["", f"### {title}", "", md]
    return "\n".join(lines + ["", END])


def replace_section(path: Path, block: str) -> None:
    """Put ``block`` (BEGIN ... END) in place of the one in ``path``; atomic: a temp file, then rename."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: expected the marker lines {BEGIN!r} and {END!r}, in that order")
    new = text[:start] + block + text[end + len(END):]
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def text_models(args) -> list[str]:
    if args.gguf:
        return args.gguf
    import models
    return [str(models.build_gguf(models.shape_for(name), quant, args.cache_dir))
            for name in args.text.split(",") if name for quant in args.quants.split(",")]


def image_models(args) -> list[str]:
    if args.sd:
        return args.sd
    import bench_diffusion
    import diffusion_models as dm
    out = []
    for name in (n for n in args.image.split(",") if n):
        shape = dm.UNET_SHAPES[name]
        out.append(str(dm.build_sd(shape, args.cache_dir)))
        if "onnxruntime" in args.image_backends.split(","):
            out.append(str(bench_diffusion.onnx_folder(shape, args.cache_dir)))   # pairs with the folder before it
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    import models
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", default="smollm,tinyllama", help=f"shapes from models.py: {', '.join(models.SHAPES)} ('' = none)")
    p.add_argument("--quants", default=",".join(models.QUANTS))
    p.add_argument("--gguf", nargs="+", help="these GGUF files instead of the built shapes")
    p.add_argument("--image", default="small,sd15", help="UNet shapes from diffusion_models.py ('' = none)")
    p.add_argument("--sd", nargs="+", help="these diffusers folders instead of the built shapes")
    p.add_argument("--threads", "-t", default="1,2")
    p.add_argument("-p", default="128")
    p.add_argument("-n", default="64")
    p.add_argument("-pg", default="128,64")
    p.add_argument("-r", default="3")
    p.add_argument("--text-backends", default="native,llama.cpp")
    p.add_argument("--image-backends", default="native,onnxruntime,torch")
    p.add_argument("--steps", default="10")
    p.add_argument("--image-threads", default="2")
    p.add_argument("--cache-dir", type=Path, default=models.DEFAULT_CACHE_DIR)
    p.add_argument("--results", type=Path, default=RESULTS, help="the markdown file to update (default RESULTS.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = []
    text = text_models(args) if (args.gguf or args.text) else []
    if text:
        parts.append(("Text: pp, tg and pp+tg per backend", bench_markdown(text, [
            "-p", args.p, "-n", args.n, "-pg", args.pg, "-r", args.r, "-t", args.threads,
            "--backends", args.text_backends])))
    images = image_models(args) if (args.sd or args.image) else []
    if images:
        parts.append(("Image: seconds per step and per image", bench_markdown(images, [
            "--steps", args.steps, "-r", args.r, "-t", args.image_threads, "--backends", args.image_backends])))
    command = "python benchmarks/regenerate.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    replace_section(args.results, section(command.strip(), parts))
    print(f"updated {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
