"""Diffusion components run by onnxruntime: a folder written by ``converters/diffusers_onnx.py``.

    parts = load_onnx_components("sd-onnx-int8", threads=4)
    text = parts["text_encoder"](ids)                    # (B, 77) int64 -> (B, 77, D)
    eps = parts["unet"](latents, t, text)                # the Denoiser protocol (components.py)

The folder (``edgegen convert DIFFUSERS_DIR OUT --to onnx`` writes it):

    edgegen-onnx.json       manifest: format "edgegen-onnx-diffusion", layout, components, quant
    model_index.json        the diffusers pipeline index, as it was
    scheduler/, tokenizer/  copied as they were
    text_encoder/model.onnx input_ids int64 (B, L) -> last_hidden_state f32 (B, L, D) [, pooler_output]
    unet/model.onnx         sample f32 (B, C, H, W), timestep f32 scalar (one for the batch),
                            encoder_hidden_states f32 (B, L, D) | class_labels int64 (B,) | nothing
                            -> out_sample f32 (B, C, H, W)
    vae_decoder/model.onnx  latent_sample f32 (B, 4, h, w) -> sample f32 (B, 3, 8h, 8w)
    vae_encoder/model.onnx  sample f32 (B, 3, H, W) -> latent_parameters f32 (B, 8, H/8, W/8)
                            (mean and log-variance concatenated, not sampled)

Each ``<component>/config.json`` is the source component's config; the runners read their
attributes (``hidden_size``, ``sample_size``, ...) from it. One InferenceSession per component on
onnxruntime's CPU execution provider.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.backends.onnxruntime import MANIFEST_FILE, MODEL_FILE, _import_ort, read_manifest_header
from edgegen.errors import ModelFileError, UsageError
from edgegen.jsonfile import read_json_object

__all__ = ["load_onnx_components", "is_onnx_diffusion_folder", "read_diffusion_manifest", "OnnxTextEncoder",
           "OnnxUNet", "OnnxVaeDecoder", "OnnxVaeEncoder", "FORMAT_NAME", "FORMAT_VERSION", "COMPONENTS",
           "LAYOUTS", "IO_NAMES"]

FORMAT_NAME = "edgegen-onnx-diffusion"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
# layout -> the components its folder must hold
LAYOUTS: dict[str, tuple[str, ...]] = {"stable-diffusion": COMPONENTS, "pixel-unet": ("unet",)}
# component -> (graph inputs, graph outputs) by name; the UNet's third input depends on the model
IO_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "text_encoder": (("input_ids",), ("last_hidden_state",)),
    "unet": (("sample", "timestep"), ("out_sample",)),
    "vae_decoder": (("latent_sample",), ("sample",)),
    "vae_encoder": (("sample",), ("latent_parameters",)),
}
UNET_TEXT_INPUT, UNET_CLASS_INPUT = "encoder_hidden_states", "class_labels"


def read_diffusion_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked ``edgegen-onnx.json`` of a diffusion export folder."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    manifest = read_manifest_header(folder, FORMAT_NAME, FORMAT_VERSION, "diffusion export", "DIFFUSERS_DIR")
    layout = manifest.get("layout")
    if layout not in LAYOUTS:
        raise ModelFileError(f"{path}: field 'layout' should be one of {', '.join(LAYOUTS)}, found {layout!r}")
    components = manifest.get("components")
    if not isinstance(components, dict) or not set(LAYOUTS[layout]) <= set(components) \
            or not set(components) <= set(COMPONENTS):
        found = sorted(components) if isinstance(components, dict) else components
        raise ModelFileError(f"{path}: field 'components' should name {', '.join(LAYOUTS[layout])} "
                             f"for layout {layout}, found {found!r}")
    for name, entry in components.items():
        expected = f"{name}/{MODEL_FILE}"
        if not isinstance(entry, dict) or entry.get("file") != expected:
            raise ModelFileError(f"{path}: field 'components.{name}.file' should be '{expected}', "
                                 f"found {entry.get('file') if isinstance(entry, dict) else entry!r}")
    return manifest


def is_onnx_diffusion_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder whose manifest says it is an edgegen ONNX diffusion export."""
    manifest_path = Path(path) / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME


def _read_config(path: Path) -> dict[str, Any]:
    return read_json_object(path, ModelFileError, f"each component's config.json sits beside its {MODEL_FILE}")


def _field(config: dict, key: str, path: Path, optional: bool = False) -> int | None:
    """A positive integer field (a [h, w] list counts as its first side: sample_size)."""
    value = config.get(key)
    if isinstance(value, list) and value:
        value = value[0]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelFileError(f"{path}: field '{key}' should be a positive integer, found {config.get(key)!r}")
    return value


def _open_session(ort, model_path: Path, threads: int | None):
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: file not found (the model named by {MANIFEST_FILE})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0   # 0: onnxruntime's default (physical cores)
    state = ort.capi.onnxruntime_pybind11_state
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except (state.Fail, state.InvalidProtobuf, state.InvalidGraph, state.NoSuchFile, state.InvalidArgument,
            state.NotImplemented, state.RuntimeException) as e:
        raise ModelFileError(f"{model_path}: onnxruntime cannot load it ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]})") from None


class _Runner:
    """One component: its session, checked graph, and the config.json beside it."""
    name = ""

    def __init__(self, ort, folder: Path, threads: int | None, extra_inputs: tuple[str, ...] = ()):
        self.model_path = folder / self.name / MODEL_FILE
        self.config_path = folder / self.name / CONFIG_FILE
        self.config = _read_config(self.config_path)
        self.session = _open_session(ort, self.model_path, threads)
        inputs, outputs = IO_NAMES[self.name]
        self.input_names = [i.name for i in self.session.get_inputs()]
        found_out = [o.name for o in self.session.get_outputs()]
        if self.input_names != [*inputs, *extra_inputs] or found_out[0] != outputs[0]:
            raise ModelFileError(f"{self.model_path}: graph inputs {self.input_names} -> outputs {found_out}; "
                                 f"expected {[*inputs, *extra_inputs]} -> {list(outputs)}")
        self.output_name = outputs[0]

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self.session.run([self.output_name], feeds)[0]
        return out.astype(np.float32, copy=False)


def _float_nchw(x: np.ndarray, what: str, channels: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != channels:
        raise UsageError(f"{what}: expected float32 (B, {channels}, H, W), found shape {x.shape}")
    return x


class OnnxTextEncoder(_Runner):
    name = "text_encoder"

    def __init__(self, ort, folder: Path, threads: int | None):
        super().__init__(ort, folder, threads)
        self.hidden_size = _field(self.config, "hidden_size", self.config_path)
        self.max_length = _field(self.config, "max_position_embeddings", self.config_path)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 2 or not 1 <= ids.shape[1] <= self.max_length:
            raise UsageError(f"text_encoder: expected token ids (B, L <= {self.max_length}), found shape {ids.shape}")
        return self._run({"input_ids": ids})                                  # (B, L, D)


class OnnxUNet(_Runner):
    """The Denoiser: a UNet2DConditionModel (text states), or a UNet2DModel (class labels or nothing)."""
    name = "unet"

    def __init__(self, ort, folder: Path, threads: int | None):
        config = _read_config(folder / self.name / CONFIG_FILE)
        self.cross_attention_dim = _field(config, "cross_attention_dim", folder / self.name / CONFIG_FILE, True)
        self.num_class_embeds = _field(config, "num_class_embeds", folder / self.name / CONFIG_FILE, True)
        self.cond_input = UNET_TEXT_INPUT if self.cross_attention_dim else (
            UNET_CLASS_INPUT if self.num_class_embeds else None)
        super().__init__(ort, folder, threads, (self.cond_input,) if self.cond_input else ())
        self.in_channels = _field(self.config, "in_channels", self.config_path)
        self.out_channels = _field(self.config, "out_channels", self.config_path)
        self.sample_size = _field(self.config, "sample_size", self.config_path)

    def __call__(self, x: np.ndarray, t: Any, cond: np.ndarray | None) -> np.ndarray:
        x = _float_nchw(x, "unet sample", self.in_channels)                  # (B, C, H, W)
        t = np.asarray(t, dtype=np.float32)
        if t.size != 1:
            raise UsageError(f"unet timestep: expected one timestep for the batch, found shape {t.shape}")
        feeds = {"sample": x, "timestep": t.reshape(())}                     # timestep: f32 scalar
        if self.cond_input is None:
            if cond is not None:
                raise UsageError("unet: this UNet2DModel is unconditional; pass cond=None")
        elif cond is None:
            raise UsageError(f"unet: this model needs {self.cond_input} as cond, found None")
        elif self.cond_input == UNET_TEXT_INPUT:
            cond = np.ascontiguousarray(cond, dtype=np.float32)
            if cond.ndim != 3 or cond.shape[0] != x.shape[0] or cond.shape[2] != self.cross_attention_dim:
                raise UsageError(f"unet cond: expected text states ({x.shape[0]}, L, {self.cross_attention_dim}), "
                                 f"found shape {cond.shape}")
            feeds[UNET_TEXT_INPUT] = cond                                    # (B, L, D)
        else:
            cond = np.ascontiguousarray(cond, dtype=np.int64).reshape(-1)
            if cond.shape[0] != x.shape[0] or cond.min() < 0 or cond.max() >= self.num_class_embeds:
                raise UsageError(f"unet cond: expected {x.shape[0]} class labels in [0, {self.num_class_embeds}), "
                                 f"found {cond.tolist()}")
            feeds[UNET_CLASS_INPUT] = cond                                   # (B,)
        return self._run(feeds)                                              # (B, out_channels, H, W)


class _Vae(_Runner):
    def __init__(self, ort, folder: Path, threads: int | None):
        super().__init__(ort, folder, threads)
        self.latent_channels = _field(self.config, "latent_channels", self.config_path)
        blocks = self.config.get("block_out_channels")
        if not isinstance(blocks, list) or not blocks:
            raise ModelFileError(f"{self.config_path}: field 'block_out_channels' should be a non-empty list, "
                                 f"found {blocks!r}")
        self.scale_factor = 2 ** (len(blocks) - 1)


class OnnxVaeDecoder(_Vae):
    name = "vae_decoder"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = _float_nchw(z, "vae_decoder latents", self.latent_channels)     # (B, 4, h, w)
        return self._run({"latent_sample": z})                               # (B, 3, h * f, w * f)


class OnnxVaeEncoder(_Vae):
    name = "vae_encoder"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = _float_nchw(image, "vae_encoder image", 3)                    # (B, 3, H, W)
        if image.shape[2] % self.scale_factor or image.shape[3] % self.scale_factor:
            raise UsageError(f"vae_encoder image: H and W should be multiples of {self.scale_factor}, "
                             f"found {image.shape[2:]}")
        return self._run({"sample": image})                                  # (B, 2 * 4, H / f, W / f)


RUNNERS = {"text_encoder": OnnxTextEncoder, "unet": OnnxUNet, "vae_decoder": OnnxVaeDecoder,
           "vae_encoder": OnnxVaeEncoder}


def load_onnx_components(folder: str | os.PathLike, threads: int | None = None) -> dict[str, Any]:
    """The components of an ONNX diffusion folder: name -> runner (components.py's protocols).
    ``threads``: onnxruntime intra-op threads per session (None: its default)."""
    folder = Path(folder)
    manifest = read_diffusion_manifest(folder)
    ort = _import_ort()
    return {name: RUNNERS[name](ort, folder, threads) for name in COMPONENTS if name in manifest["components"]}
