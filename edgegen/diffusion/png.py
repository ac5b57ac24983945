"""PNG output: the image with how it was made in tEXt chunks, written atomically, byte-identical
for the same image and metadata (no timestamps).

    save_png(image, "cat.png", {"prompt": "a cat", "seed": "42", ...})
    read_png_text("cat.png")["prompt"]   # "a cat"
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgegen.atomic import write_atomically
from edgegen.errors import MissingDependencyError, UsageError

INSTALL = "pip install --force-reinstall edgegen  (Pillow is a dependency)"
# the keys the CLI writes, in this order (others follow, sorted)
METADATA_KEYS = ("prompt", "negative_prompt", "seed", "steps", "scheduler", "guidance", "size", "upscale", "strength",
                 "model", "backend", "software")


def pil_image():
    """PIL.Image, imported when first needed."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(f"writing images needs Pillow: {INSTALL}") from None
    return Image


def to_pil(image: np.ndarray):
    """uint8 (H, W, 3) -> a PIL RGB image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"image: expected uint8 (H, W, 3), found {image.dtype} {image.shape}")
    return pil_image().fromarray(np.ascontiguousarray(image))


def save_png(image: np.ndarray, path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``image`` (uint8 H x W x 3) to ``path`` as PNG with ``metadata`` as tEXt chunks (iTXt
    where a value is not Latin-1). The file appears complete or not at all (temp file + os.replace)."""
    from PIL import PngImagePlugin
    img = to_pil(image)
    info = PngImagePlugin.PngInfo()
    meta = dict(metadata or {})
    ordered = [k for k in METADATA_KEYS if k in meta] + sorted(k for k in meta if k not in METADATA_KEYS)
    for key in ordered:
        value = str(meta[key])
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"-o: the folder {folder} does not exist")
    write_atomically(path, lambda tmp: img.save(tmp, format="PNG", pnginfo=info))
    return path


def read_png_text(path) -> dict[str, str]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt)."""
    with pil_image().open(path) as img:
        img.load()
        return dict(getattr(img, "text", {}))
