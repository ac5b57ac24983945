"""The weights of one diffusers / transformers component folder, memory-mapped from .safetensors.

    vae/diffusion_pytorch_model.safetensors        (or diffusion_pytorch_model.fp16.safetensors)
    unet/diffusion_pytorch_model.safetensors
    text_encoder/model.safetensors                 (or model.fp16.safetensors)

``read_tensors`` maps the file and returns views of it: F32 and F16 tensors stay as stored and are
not read until used; BF16 (which NumPy lacks) and F64 become float32 copies. The header is checked
by converters/hf_checkpoint.py's reader; every problem is a ModelFileError naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from edgegen.errors import ConversionError, ModelFileError, UnsupportedModelError

# the file names a component folder may hold, in order of preference (full precision first)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors")
INDEX_SUFFIX = ".safetensors.index.json"
_STORED = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
_BF16_SHIFT = 16


def find_weights(component_dir: Path) -> Path:
    """The one .safetensors file of a component folder, or ModelFileError saying what is there instead."""
    folder = Path(component_dir)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: component folder is missing")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    shards = sorted(p.name for p in folder.glob(f"*{INDEX_SUFFIX}"))
    if shards:
        raise UnsupportedModelError(f"{folder / shards[0]}: sharded weights are not supported; expected one of "
                                    f"{', '.join(WEIGHT_FILES)}")
    others = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.ckpt"))
    hint = (f"; found {', '.join(others)}: re-save the model with save_pretrained(..., safe_serialization=True)"
            if others else "")
    raise ModelFileError(f"{folder}: no weights file, expected one of {', '.join(WEIGHT_FILES)}{hint}")


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """name -> array for one .safetensors file: read-only memory-mapped views for F32/F16, float32 for BF16/F64."""
    from edgegen.converters.hf_checkpoint import read_safetensors_header
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file is missing")
    try:
        entries = read_safetensors_header(path)
    except ConversionError as e:
        raise ModelFileError(str(e)) from None
    except AttributeError:   # a JSON header that is not an object
        raise ModelFileError(f"{path}: safetensors header is not a JSON object") from None
    if not entries:
        return {}
    data = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        stored = data[e.begin:e.begin + e.nbytes].view(_STORED[e.dtype]).reshape(e.shape)
        if e.dtype == "BF16":
            stored = (stored.astype(np.uint32) << _BF16_SHIFT).view(np.float32)
        elif e.dtype == "F64":
            stored = stored.astype(np.float32)
        out[name] = stored
    return out


def stored_dtype(tensors: Mapping[str, np.ndarray]) -> str:
    """"f16" when the component's weights are stored as float16 (most of their bytes), else "f32"."""
    f16 = sum(a.nbytes for a in tensors.values() if a.dtype == np.float16)
    return "f16" if f16 * 2 > sum(a.nbytes for a in tensors.values()) else "f32"


def release_pages(arr: np.ndarray) -> None:
    """Drop the pages of a memory-mapped tensor from this process's resident set once a converted
    copy has been made of it (madvise MADV_DONTNEED on the whole pages inside it): the file stays
    in the OS page cache, and a later read of the same bytes faults them back in. Without it a
    model whose weights are reordered at load (convolutions) would hold them twice at its peak.
    A no-op for arrays that are not file-mapped, or where the OS has no madvise."""
    import mmap
    top = arr
    while isinstance(top.base, np.ndarray):
        top = top.base
    if not isinstance(top.base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    begin = arr.__array_interface__["data"][0] - top.__array_interface__["data"][0]
    page = mmap.PAGESIZE
    start, end = -(-begin // page) * page, (begin + arr.nbytes) // page * page
    if end > start:
        top.base.madvise(mmap.MADV_DONTNEED, start, end - start)
