"""Loading a diffusers pipeline folder onto edgegen's native models (clip.py, unet.py, vae.py).

    comps = load_native_components("sd-folder", threads=4)
    comps["text_encoder"](ids); comps["unet"](x, t, states); comps["vae_decoder"](z)

model_index.json says which components the folder holds; each is built from its config.json
and its one .safetensors file (weights.py), memory-mapped. A pixel-space DDPM folder yields only
"unet"; a Stable Diffusion folder "text_encoder", "unet", "vae_decoder" and "vae_encoder".
All of them share one ``Ops("cpp", threads)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from edgegen.errors import ModelFileError, UnsupportedModelError, UsageError

from .folder import component_class, read_json
from .ops import WEIGHT_DTYPES, Ops
from .weights import find_weights, read_tensors, stored_dtype

# component folder -> the classes the native models run (one explicit table)
NATIVE_CLASSES: dict[str, tuple[str, ...]] = {
    "text_encoder": ("CLIPTextModel",),
    "unet": ("UNet2DConditionModel", "UNet2DModel"),
    "vae": ("AutoencoderKL",),
}
INDEX_FILE = "model_index.json"


def _text_encoder(d: dict, cfg_path: Path, tensors: dict, ops: Ops, dtype: str) -> dict[str, Any]:
    from .clip import ClipTextConfig, NativeClipTextEncoder
    return {"text_encoder": NativeClipTextEncoder.from_tensors(ClipTextConfig.from_hf_config(d, cfg_path),
                                                                tensors, ops, dtype)}


def _unet(d: dict, cfg_path: Path, tensors: dict, ops: Ops, dtype: str) -> dict[str, Any]:
    from .unet import NativeUNet, UNetConfig
    return {"unet": NativeUNet.from_tensors(UNetConfig.from_hf_config(d, cfg_path), tensors, ops, dtype)}


def _vae(d: dict, cfg_path: Path, tensors: dict, ops: Ops, dtype: str) -> dict[str, Any]:
    from .vae import NativeVaeDecoder, NativeVaeEncoder, VaeConfig
    config = VaeConfig.from_hf_config(d, cfg_path)
    return {"vae_decoder": NativeVaeDecoder.from_tensors(config, tensors, ops, dtype),
            "vae_encoder": NativeVaeEncoder.from_tensors(config, tensors, ops, dtype)}


_BUILDERS: dict[str, Callable[[dict, Path, dict, Ops, str], dict[str, Any]]] = {
    "text_encoder": _text_encoder, "unet": _unet, "vae": _vae,
}


def load_native_components(folder, threads: int | None = None, dtype: str | None = None,
                           attention_chunk: int | None = None) -> dict[str, Any]:
    """The native components of a diffusers folder: keys "text_encoder", "unet", "vae_decoder",
    "vae_encoder" for those model_index.json lists. ``dtype`` "f32" | "f16" stores every weight
    matrix so; None keeps each component as stored (an f16 file stays f16). ``threads`` None uses
    every core; ``attention_chunk`` bounds attention's score matrix (query rows at a time)."""
    if dtype is not None and dtype not in WEIGHT_DTYPES:
        raise UsageError(f"dtype: expected one of {', '.join(WEIGHT_DTYPES)} or None, found {dtype!r}")
    path = Path(folder)
    if not path.is_dir():
        raise ModelFileError(f"{path}: expected a diffusers pipeline folder (with {INDEX_FILE}), found "
                             f"{'a file' if path.exists() else 'nothing'}")
    index = read_json(path / INDEX_FILE, "the pipeline index")
    if not isinstance(index, dict):
        raise ModelFileError(f"{path / INDEX_FILE}: expected a JSON object, found {type(index).__name__}")
    ops = Ops("cpp", threads or os.cpu_count() or 1, attention_chunk)
    out: dict[str, Any] = {}
    for name, build in _BUILDERS.items():
        cls = component_class(path, index, name)
        if cls is None:
            continue
        if cls not in NATIVE_CLASSES[name]:
            raise UnsupportedModelError(f"{path / INDEX_FILE}: component {name!r} is a {cls}; the native "
                                        f"runtime runs {' or '.join(NATIVE_CLASSES[name])}")
        cfg_path = path / name / "config.json"
        config = read_json(cfg_path, f"the {name} config")
        tensors = read_tensors(find_weights(path / name))
        out.update(build(config, cfg_path, tensors, ops, dtype or stored_dtype(tensors)))
    if not out:
        raise ModelFileError(f"{path / INDEX_FILE}: lists none of {', '.join(_BUILDERS)}")
    return out
