"""A local diffusers folder -> an ONNX folder that ``edgegen.diffusion.onnx_components`` runs.

    export_diffusers_onnx("tiny-sd", "tiny-sd-onnx-int8", quant="int8")

Layouts (read from model_index.json and each component's config.json, never from names):
- ``stable-diffusion``: text_encoder (CLIPTextModel), tokenizer, unet (UNet2DConditionModel),
  vae (AutoencoderKL), scheduler. Exported with **optimum's** diffusion exporter
  (``optimum.exporters.utils.get_diffusion_models_for_export`` for the components and their
  OnnxConfigs, then ``optimum.exporters.onnx.export`` one component at a time so that progress
  shows each one; it is what ``main_export(task="text-to-image")`` runs, minus the hub lookups).
  I/O: text_encoder ``input_ids`` -> ``last_hidden_state`` (and ``pooler_output``); unet
  ``sample``, ``timestep``, ``encoder_hidden_states`` -> ``out_sample``; vae_decoder
  ``latent_sample`` -> ``sample`` (post_quant_conv + decoder); vae_encoder ``sample`` ->
  ``latent_parameters`` (encoder + quant_conv: mean and log-variance, not sampled).
- ``pixel-unet``: DDPM/DDIM folders (unet (UNet2DModel) + scheduler), which optimum does not
  export: ``torch.onnx.export`` (TorchScript exporter) of a wrapper with inputs ``sample``,
  ``timestep`` and, for a class-conditional UNet (``num_class_embeds``), ``class_labels`` int64 (B,).

``timestep`` is a float32 scalar (one timestep for the whole batch) in both layouts: optimum's
choice for the UNet, and what the denoising loop passes. Batch and spatial sizes (and the text
length) are dynamic axes.

Quantization (onnxruntime's own tools, recorded in the manifest per component):
- int8: ``quantize_dynamic`` with QUInt8 weights (see onnx_export.py for why not QInt8) of the
  MatMul/Gemm weights only (``op_types_to_quantize``) in the text encoder and UNet; convolutions
  and the whole VAE stay float32. Measured on the tiny test model (latents 2x4x32x32, relative L2
  error against fp32): UNet 0.006 MatMul-only vs 0.031 with the default op list (dynamic
  ConvInteger), file 2.96 vs 1.30 MB; VAE decoder 0.003 vs 0.047. ConvInteger is not slower (two
  320-channel 3x3 convs at 64x64: 227 ms vs 259 ms float, 2 threads, AVX2), so the choice is
  accuracy over size: per-tensor dynamic activation quantization of the convolutions is what
  degrades the outputs, and the VAE's error lands directly in the image.
- fp16: ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`` on the
  text encoder and UNet; the VAE stays float32 (SD-family VAE decoders overflow float16
  activations, and it runs once per image).

Everything is written into a temporary folder beside OUT_DIR and renamed at the end; an error or
Ctrl-C leaves no OUT_DIR.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edgegen.backends.onnxruntime import MANIFEST_FILE, MODEL_FILE
from edgegen.diffusion.onnx_components import (CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION, IO_NAMES, LAYOUTS,
                                               UNET_CLASS_INPUT, UNET_TEXT_INPUT)
from edgegen.errors import ConversionError
from edgegen.jsonfile import read_json_object

from .onnx_export import _log, _require, _version, build_atomically, to_fp16

__all__ = ["export_diffusers_onnx", "DiffusersOnnxExportReport", "QUANTS", "inspect_diffusers_folder"]

INDEX_FILE = "model_index.json"
QUANTS: dict[str, str] = {
    "fp32": "none",
    "fp16": "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
    "int8": "onnxruntime.quantization.quantize_dynamic(weight_type=QUInt8, op_types_to_quantize=[MatMul, Gemm])",
}
QUANTIZED_COMPONENTS = ("text_encoder", "unet")   # the VAE stays float32 (module docstring)
INT8_OPS = ["MatMul", "Gemm"]
PIXEL_OPSET = 17
# source folder (model_index.json key) and class per layout; exported name -> source folder
SD_SOURCES = {"text_encoder": "CLIPTextModel", "unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}
PIXEL_SOURCES = {"unet": "UNet2DModel"}
SOURCE_OF = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae", "vae_encoder": "vae"}
COPIED_FOLDERS = ("scheduler", "tokenizer")
OPTIMUM_TOOL = "optimum.exporters.onnx.export (components from optimum.exporters.utils.get_diffusion_models_for_export)"
TORCH_TOOL = "torch.onnx.export (TorchScript exporter, dynamo=False) of a UNet2DModel wrapper"
_MIB = 1024 * 1024


@dataclass(frozen=True)
class DiffusersOnnxExportReport:
    output: Path
    layout: str
    quant: str
    components: dict[str, int] = field(default_factory=dict)   # name -> bytes of model.onnx (+ data)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = ", ".join(f"{name} {size / _MIB:.2f} MiB" for name, size in self.components.items())
        return f"{self.output}: {self.layout}, ONNX {self.quant} ({parts}), exported in {self.seconds:.1f} s"


def _check_component(src: Path, name: str, expected_class: str) -> None:
    folder = src / name
    if not folder.is_dir():
        raise ConversionError(f"{folder}: component folder '{name}' not found (a {expected_class} with "
                              f"{CONFIG_FILE} and *.safetensors)")
    config = read_json_object(folder / CONFIG_FILE, ConversionError, f"the {name} component's config")
    found = config.get("_class_name") or (config.get("architectures") or [None])[0]
    if found != expected_class:
        raise ConversionError(f"{folder / CONFIG_FILE}: expected a {expected_class}, found {found!r}")
    if not any(folder.glob("*.safetensors")):
        raise ConversionError(f"{folder}: no *.safetensors weights for component '{name}' "
                              f"(found {sorted(p.name for p in folder.iterdir())})")


def inspect_diffusers_folder(src: str | os.PathLike) -> str:
    """Check a diffusers folder before anything heavy; returns its layout (LAYOUTS' keys)."""
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"{src}: not a folder (expected a diffusers folder with {INDEX_FILE})")
    index = read_json_object(src / INDEX_FILE, ConversionError, "a diffusers pipeline folder has one")
    unet_class = (index.get("unet") or [None, None])[1]
    if index.get("_class_name") == "StableDiffusionPipeline" or "text_encoder" in index or "vae" in index:
        layout, sources = "stable-diffusion", SD_SOURCES
    elif unet_class == "UNet2DModel":
        layout, sources = "pixel-unet", PIXEL_SOURCES
    else:
        raise ConversionError(f"{src / INDEX_FILE}: pipeline {index.get('_class_name')!r} is not supported "
                              "(expected StableDiffusionPipeline, or a DDPM/DDIM pipeline with a UNet2DModel)")
    for name, cls in sources.items():
        _check_component(src, name, cls)
    needed = COPIED_FOLDERS if layout == "stable-diffusion" else ("scheduler",)
    for name in needed:
        if not (src / name).is_dir():
            raise ConversionError(f"{src / name}: component folder '{name}' not found")
    return layout


def _load_local(cls, folder: Path):
    """``cls.from_pretrained(folder)`` from local files only, without diffusers' accelerate notice."""
    from diffusers.utils import logging as diffusers_logging
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return cls.from_pretrained(str(folder), local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ConversionError(f"{folder}: cannot load the {cls.__name__} ({e})") from e
    finally:
        diffusers_logging.set_verbosity(level)


def _load_sd(src: Path):
    """A StableDiffusionPipeline of the three exported models, from the local folder only."""
    diffusers = _require("diffusers", "diffusers ONNX export")
    transformers = _require("transformers", "diffusers ONNX export")
    loaders = {"text_encoder": transformers.CLIPTextModel, "unet": diffusers.UNet2DConditionModel,
               "vae": diffusers.AutoencoderKL}
    parts = {name: _load_local(cls, src / name) for name, cls in loaders.items()}
    # the scheduler and tokenizer are copied, not exported: placeholders that satisfy the constructor
    return diffusers.StableDiffusionPipeline(
        **parts, tokenizer=None, scheduler=diffusers.DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _export_sd(src: Path, fp32: Path, progress: bool) -> dict[str, float]:
    """optimum's exporter, one component at a time -> fp32/<name>/model.onnx; name -> seconds."""
    onnx_exporters = _require("optimum.exporters.onnx", "diffusers ONNX export")
    exporters_utils = _require("optimum.exporters.utils", "diffusers ONNX export")
    shapes_module = _require("optimum.utils", "diffusers ONNX export")
    _require("optimum.exporters.onnx.model_configs", "diffusers ONNX export")   # registers the OnnxConfigs
    pipeline = _load_sd(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer warnings about shape-dependent branches are expected
        try:
            models = exporters_utils.get_diffusion_models_for_export(pipeline)
        except (ValueError, KeyError) as e:
            raise ConversionError(f"{src}: optimum has no ONNX config for these components ({e})") from e
        times = {}
        for name in ("text_encoder", "unet", "vae_decoder", "vae_encoder"):
            model, config = models[name]
            start = time.perf_counter()
            (fp32 / name).mkdir(parents=True)
            try:
                onnx_exporters.export(model, config, fp32 / name / MODEL_FILE, device="cpu",
                                      input_shapes=dict(shapes_module.DEFAULT_DUMMY_SHAPES))
            except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
                raise ConversionError(f"{src / SOURCE_OF[name]}: optimum's ONNX export of {name} failed: {e}") from e
            times[name] = time.perf_counter() - start
            _log(progress, f"  exported {name} in {times[name]:.1f} s")
    return times


def _pixel_wrapper(torch, unet):
    """The UNet2DModel as torch.onnx.export wants it: tensors in, one tensor out."""

    class PixelUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, class_labels=None):
            return self.unet(sample, timestep, class_labels=class_labels, return_dict=False)[0]
    return PixelUNet().eval()


def _export_pixel(src: Path, fp32: Path, progress: bool) -> dict[str, float]:
    """torch.onnx.export of the UNet2DModel -> fp32/unet/model.onnx."""
    torch = _require("torch", "diffusers ONNX export")
    diffusers = _require("diffusers", "diffusers ONNX export")
    unet = _load_local(diffusers.UNet2DModel, src / "unet")
    cfg = unet.config
    conditional = cfg.num_class_embeds is not None
    if cfg.class_embed_type is not None and not conditional:
        raise ConversionError(f"{src / 'unet' / CONFIG_FILE}: class_embed_type {cfg.class_embed_type!r} is not "
                              "supported (expected none, or num_class_embeds for class labels)")
    side = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    sample = torch.randn(2, cfg.in_channels, side, side)                     # (B, C, H, W)
    args = (sample, torch.tensor(10.0))                                      # timestep: f32 scalar
    names = ["sample", "timestep"]
    axes = {"sample": {0: "batch_size", 2: "height", 3: "width"}, "out_sample": {0: "batch_size", 2: "height",
                                                                                  3: "width"}}
    if conditional:
        args += (torch.zeros(2, dtype=torch.int64),)                         # class_labels (B,)
        names.append(UNET_CLASS_INPUT)
        axes[UNET_CLASS_INPUT] = {0: "batch_size"}
    start = time.perf_counter()
    (fp32 / "unet").mkdir(parents=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(_pixel_wrapper(torch, unet), args, str(fp32 / "unet" / MODEL_FILE),
                              input_names=names, output_names=["out_sample"], dynamic_axes=axes,
                              opset_version=PIXEL_OPSET, dynamo=False)
        except (RuntimeError, ValueError, TypeError) as e:
            raise ConversionError(f"{src / 'unet'}: torch.onnx.export of the UNet2DModel failed: {e}") from e
    seconds = time.perf_counter() - start
    _log(progress, f"  exported unet in {seconds:.1f} s")
    return {"unet": seconds}


def _quantize(src: Path, dst: Path, quant: str) -> None:
    """src (float32 model.onnx) -> dst with ``quant``'s weights."""
    external = any(p.name != MODEL_FILE for p in src.parent.iterdir())   # weights past protobuf's 2 GB
    if quant == "int8":
        q = _require("onnxruntime.quantization", "int8 quantization")
        root = logging.getLogger()   # it logs a pre-processing hint at WARNING on the root logger
        level, root.level = root.level, logging.ERROR
        try:
            q.quantize_dynamic(src, dst, weight_type=q.QuantType.QUInt8, op_types_to_quantize=INT8_OPS,
                               use_external_data_format=external)
        finally:
            root.setLevel(level)
    elif quant == "fp16":
        to_fp16(src, dst, external)
    else:
        raise AssertionError(quant)


def _place(fp32: Path, tmp: Path, name: str, quant: str, progress: bool) -> str:
    """Move (fp32) or quantize fp32/<name> into tmp/<name>; returns the tool that made it."""
    dst = tmp / name
    dst.mkdir(parents=True, exist_ok=True)
    if quant == "fp32" or name not in QUANTIZED_COMPONENTS:
        for path in fp32.joinpath(name).iterdir():   # model.onnx and any external data files beside it
            os.replace(path, dst / path.name)
        return QUANTS["fp32"]
    start = time.perf_counter()
    _quantize(fp32 / name / MODEL_FILE, dst / MODEL_FILE, quant)
    _log(progress, f"  quantized {name} to {quant} in {time.perf_counter() - start:.1f} s")
    return QUANTS[quant]


def _graph_io(path: Path) -> tuple[list[str], list[str]]:
    onnx = _require("onnx", "diffusers ONNX export")
    graph = onnx.load(str(path), load_external_data=False).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


def _check_io(tmp: Path, name: str) -> tuple[list[str], list[str]]:
    """The exported graph's I/O names must be what the runners expect (IO_NAMES)."""
    inputs, outputs = _graph_io(tmp / name / MODEL_FILE)
    want_in, want_out = IO_NAMES[name]
    extra = {UNET_TEXT_INPUT, UNET_CLASS_INPUT} if name == "unet" else set()
    if inputs[:len(want_in)] != list(want_in) or not set(inputs[len(want_in):]) <= extra or outputs[0] != want_out[0]:
        raise ConversionError(f"{name}: the exporter wrote inputs {inputs} -> outputs {outputs}; expected "
                              f"{list(want_in)} (+ {sorted(extra)}) -> {list(want_out)}")
    return inputs, outputs


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith(MODEL_FILE))


def _build(src: Path, tmp: Path, layout: str, quant: str, progress: bool) -> dict:
    """Everything OUT_DIR holds, written into ``tmp``; returns the manifest."""
    fp32 = tmp / ".fp32"
    tool = OPTIMUM_TOOL if layout == "stable-diffusion" else TORCH_TOOL
    _log(progress, f"[1/3] exporting {layout} components from {src} with {tool.split(' (')[0]} ...")
    times = (_export_sd if layout == "stable-diffusion" else _export_pixel)(src, fp32, progress)
    quantized = [n for n in times if n in QUANTIZED_COMPONENTS and quant != "fp32"]
    _log(progress, f"[2/3] quantizing {', '.join(quantized)} to {quant} ..." if quantized
         else "[2/3] fp32: no quantization")
    components = {}
    for name in LAYOUTS[layout]:
        made_by = _place(fp32, tmp, name, quant, progress)
        shutil.copy2(src / SOURCE_OF[name] / CONFIG_FILE, tmp / name / CONFIG_FILE)
        inputs, outputs = _check_io(tmp, name)
        components[name] = {"file": f"{name}/{MODEL_FILE}", "source": SOURCE_OF[name], "inputs": inputs,
                            "outputs": outputs, "quant": quant if made_by != QUANTS["fp32"] else "fp32",
                            "quant_tool": made_by, "size_bytes": _size(tmp / name),
                            "export_seconds": round(times[name], 2)}
        _log(progress, f"  {name}: {components[name]['quant']}, {components[name]['size_bytes'] / _MIB:.2f} MiB")
    shutil.rmtree(fp32)
    _log(progress, f"[3/3] copying {INDEX_FILE}, scheduler/, tokenizer/ and writing {MANIFEST_FILE} ...")
    shutil.copy2(src / INDEX_FILE, tmp / INDEX_FILE)
    for name in COPIED_FOLDERS:
        if (src / name).is_dir():
            shutil.copytree(src / name, tmp / name)
    manifest = _manifest(src, layout, quant, tool, components)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _manifest(src: Path, layout: str, quant: str, tool: str, components: dict) -> dict:
    import edgegen
    index = json.loads((src / INDEX_FILE).read_text(encoding="utf-8"))
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "layout": layout,
        "pipeline_class": index.get("_class_name"), "source": str(src.resolve()),
        "components": components,
        "timestep": "float32 scalar (one timestep for the whole batch)",
        "quantization": {"type": quant, "tool": QUANTS[quant], "components": list(QUANTIZED_COMPONENTS)},
        "exporter": {"tool": tool},
        "tool_versions": {dist: _version(dist) for dist in ("optimum-onnx", "torch", "diffusers", "transformers",
                                                            "onnx", "onnxruntime")},
        "created_with": f"edgegen {edgegen.__version__}",
    }


def export_diffusers_onnx(src_dir: str | os.PathLike, out_dir: str | os.PathLike, quant: str = "fp32",
                          progress: bool = True) -> DiffusersOnnxExportReport:
    """Export the local diffusers folder ``src_dir`` (Stable Diffusion, or a DDPM/DDIM UNet2DModel
    pipeline) to ``out_dir``: <component>/model.onnx + config.json, scheduler/, tokenizer/,
    model_index.json, edgegen-onnx.json. ``quant``: fp32, fp16 or int8. Raises ConversionError
    naming the file or component at fault, MissingDependencyError (``pip install
    'edgegen[export-onnx]'``) when optimum-onnx, torch, diffusers or onnx is missing. ``out_dir``
    only appears once everything is written."""
    start = time.perf_counter()
    src, out = Path(src_dir), Path(out_dir)
    if quant not in QUANTS:
        raise ConversionError(f"quant: expected one of {', '.join(QUANTS)} for a diffusers ONNX export, "
                              f"found '{quant}'")
    layout = inspect_diffusers_folder(src)
    for module in ("torch", "onnx", "onnxruntime", "diffusers") + (("optimum.exporters.onnx",)
                                                                    if layout == "stable-diffusion" else ()):
        _require(module, "diffusers ONNX export")
    manifest = build_atomically(out, lambda tmp: _build(src, tmp, layout, quant, progress))
    sizes = {name: entry["size_bytes"] for name, entry in manifest["components"].items()}
    return DiffusersOnnxExportReport(out, layout, quant, sizes, time.perf_counter() - start)
