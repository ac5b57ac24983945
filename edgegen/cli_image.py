"""``edgegen image [MODEL] PROMPT -o out.png``: a diffusion model's image, saved as PNG with its settings.

Without MODEL, the bundled digits model (edgegen/data/digits, docs/models/digits.md) draws the
digit PROMPT names ("0".."9"). A model folder may hold ``edgegen.json``, e.g.
``{"steps": 25, "guidance": 2.0, "upscale": 8}``: the steps and guidance it was tuned for and how
many times to enlarge its (small) images in the PNG, used where the user passes no --steps /
--guidance / --upscale (otherwise 20, 7.5 and 1).

Glue only (parse, call edgegen.diffusion.pipeline, print); edgegen/cli.py registers it with
``add_image_parser(sub)`` and ``COMMANDS["image"] = cmd_image``.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import warnings

import edgegen
from edgegen.errors import ModelFileError, UsageError
from edgegen.jsonfile import read_json_object

BACKENDS = ("native", "onnxruntime", "torch")   # edgegen.diffusion.pipeline.LOADERS (not imported: numpy-free parse)
SIZE = re.compile(r"^(\d+)[xX](\d+)$")
BUNDLED_MODEL = "digits"                        # edgegen/data/digits: the model used when MODEL is left out
MODEL_DEFAULTS_FILE = "edgegen.json"            # optional per-model defaults in a model folder
DEFAULTS = {"steps": 20, "guidance": 7.5, "upscale": 1}   # where neither the user nor the model says
DEFAULT_TYPES = {"steps": int, "guidance": (int, float), "upscale": int}
MAX_UPSCALE = 16


def add_image_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("image", help="draw an image with a diffusion model (a diffusers folder or its ONNX export)",
                       usage='edgegen image [MODEL] "PROMPT" [-o out.png] [options]')
    p.add_argument("args", nargs="+", metavar="[MODEL] PROMPT",
                   help="MODEL: a diffusers pipeline folder (model_index.json) or its ONNX export (default: the "
                   "bundled digits model, prompts 0-9); PROMPT: what to draw, for a class-conditional pixel model "
                   "a class name")
    p.add_argument("-o", "--output", default="image.png", help="PNG to write (default image.png)")
    p.add_argument("--steps", type=int, default=None,
                   help="denoising steps (default: the model's edgegen.json, else 20)")
    p.add_argument("--scheduler", default=None,
                   help="ddpm, ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras or lcm (default: the model's own)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale, <= 1 = off (default: the model's edgegen.json, else 7.5)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0): the same seed gives the same image")
    p.add_argument("--size", default=None, metavar="WxH", help="image size, e.g. 512x512 (default: the model's; "
                   "with --init-image, the image's)")
    p.add_argument("--upscale", type=int, default=None, metavar="N",
                   help=f"enlarge the saved PNG N times (Lanczos), 1-{MAX_UPSCALE} (default: the model's edgegen.json, "
                   "else 1; the bundled 16x16 digits model uses 8)")
    p.add_argument("--negative", default="", help="negative prompt (what to steer away from)")
    p.add_argument("--init-image", default=None, metavar="PNG", help="start from this image (image-to-image)")
    p.add_argument("--strength", type=float, default=0.8,
                   help="with --init-image: how much to change it, 0-1 (default 0.8)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="native: edgegen's kernels (the default for a diffusers folder); onnxruntime: an ONNX export "
                   "(the default for one); torch: PyTorch reference")
    p.add_argument("--threads", "-t", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--vae-tile", type=int, default=None, metavar="N",
                   help="decode the VAE in N x N latent tiles (bounds memory for large images)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    m = SIZE.match(text.strip())
    if not m:
        raise UsageError(f"--size: expected WIDTHxHEIGHT (e.g. 512x512), found {text!r}")
    return int(m.group(1)), int(m.group(2))


def _read_image(path: str):
    from edgegen.diffusion.png import pil_image
    try:
        with pil_image().open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as e:
        raise UsageError(f"--init-image: cannot read {path} as an image: {e}") from None


def _progress(total: int, quiet: bool):
    """A tqdm bar on stderr where tqdm is installed, else a plain counter line."""
    if quiet:
        return lambda: None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        done = [0]

        def tick():
            done[0] += 1
            print(f"\rstep {done[0]}/{total}", end="", file=sys.stderr, flush=True)
        return tick, lambda: print(file=sys.stderr)
    bar = tqdm(total=total, unit="step", file=sys.stderr, leave=False)
    return lambda: bar.update(1), bar.close


def bundled_model() -> str:
    """The digits model folder bundled inside the package."""
    from importlib.resources import files
    path = files("edgegen") / "data" / BUNDLED_MODEL
    if not path.is_dir():
        raise ModelFileError(f"the bundled image model {BUNDLED_MODEL}/ is missing from the installed package; "
                             "pass a model folder: edgegen image MODEL PROMPT")
    return str(path)


def model_defaults(folder: str) -> dict:
    """{"steps": int, "guidance": float, "upscale": int} from the folder's edgegen.json where it has one (else {})."""
    from pathlib import Path
    path = Path(folder) / MODEL_DEFAULTS_FILE
    if not path.is_file():
        return {}
    data = read_json_object(path, ModelFileError)
    for key, value in data.items():
        kinds = DEFAULT_TYPES.get(key)
        if kinds is None or isinstance(value, bool) or not isinstance(value, kinds):
            raise ModelFileError(f"{path}: field {key!r}: expected one of {', '.join(DEFAULT_TYPES)} with a number, "
                                 f"found {key!r}: {value!r}")
    return data


def _resolve(a: argparse.Namespace) -> None:
    """a.args -> a.model, a.prompt; --steps / --guidance the user left out -> the model's or edgegen's defaults."""
    if len(a.args) > 2:
        raise UsageError(f"image takes [MODEL] PROMPT, found {len(a.args)} arguments (quote the prompt)")
    a.model, a.prompt = (a.args[0], a.args[1]) if len(a.args) == 2 else (bundled_model(), a.args[0])
    own = model_defaults(a.model)
    for key in DEFAULTS:
        if getattr(a, key) is None:
            setattr(a, key, type(DEFAULTS[key])(own.get(key, DEFAULTS[key])))
    if not 1 <= a.upscale <= MAX_UPSCALE:
        raise UsageError(f"--upscale: expected a whole number from 1 to {MAX_UPSCALE}, found {a.upscale}")


def enlarge(image, factor: int):
    """uint8 (H, W, 3) -> (H * factor, W * factor, 3), Lanczos-resampled by Pillow."""
    import numpy as np
    from edgegen.diffusion.png import pil_image, to_pil
    if factor == 1:
        return image
    h, w = image.shape[:2]
    return np.asarray(to_pil(image).resize((w * factor, h * factor), pil_image().Resampling.LANCZOS))


def cmd_image(a: argparse.Namespace) -> None:
    from edgegen.diffusion.pipeline import img2img_start, load_pipeline
    from edgegen.diffusion.png import save_png
    _resolve(a)
    width, height = parse_size(a.size)
    init = _read_image(a.init_image) if a.init_image else None
    pipe = load_pipeline(a.model, backend=a.backend, threads=a.threads)
    options = dict(negative_prompt=a.negative, steps=a.steps, scheduler=a.scheduler, guidance_scale=a.guidance,
                   seed=a.seed, width=width, height=height, init_image=init, strength=a.strength)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = pipe.steps(a.prompt, **options)
    for w in caught:
        print(f"edgegen: warning: {w.message}", file=sys.stderr)
    start, last = time.perf_counter(), None
    tick, close = _progress(a.steps - (img2img_start(a.steps, a.strength) if init is not None else 0), a.quiet)
    try:
        for last in run:
            tick()
    finally:
        close()
    denoise_s = time.perf_counter() - start
    image = pipe.decode(last.latents, tile=a.vae_tile)[0]   # a grey pixel model comes back as RGB too
    decode_s = time.perf_counter() - start - denoise_s
    meta = {"prompt": a.prompt, "negative_prompt": a.negative, "seed": str(a.seed), "steps": str(a.steps),
            "scheduler": pipe.scheduler_name(a.scheduler), "guidance": f"{a.guidance:g}",
            "size": f"{image.shape[1]}x{image.shape[0]}", "model": pipe.model, "backend": pipe.backend,
            "software": f"edgegen {edgegen.__version__}"}
    if init is not None:
        meta["strength"] = f"{a.strength:g}"
    if a.upscale > 1:
        meta["upscale"] = str(a.upscale)
    path = save_png(enlarge(image, a.upscale), a.output, meta)
    print(path)
    decoder = "VAE decode" if pipe.vae_decoder is not None else "to image"
    print(f"[{last.total} steps, {denoise_s / last.total:.3f} s/step | {decoder} {decode_s:.2f} s | "
          f"{meta['size']}, {meta['scheduler']}, {pipe.backend} backend]", file=sys.stderr)
