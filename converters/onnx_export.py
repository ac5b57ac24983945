"""Hugging Face checkpoint folder -> an ONNX model folder that the onnxruntime backend loads.

    export_onnx("Qwen2-0.5B", "qwen2-onnx-int4", quant="int4", block_size=32)

Steps:
1. check the input before anything heavy: config.json (``HFConfig``: llama or qwen2), the
   safetensors headers, and tokenizer.json (read into GGUF ``tokenizer.*`` metadata);
2. export a float32 decoder with KV cache using optimum's exporter (task
   ``text-generation-with-past``: inputs ``input_ids``, ``attention_mask``, ``position_ids``,
   ``past_key_values.N.key/value``; outputs ``logits``, ``present.N.key/value``), from the local
   folder only (``local_files_only``: never the hub);
3. quantize with onnxruntime's own tools (``QUANTS``): int8 = dynamic quantization of the
   MatMul weights, int4 = 4-bit block-wise symmetric weight-only ``MatMulNBits``, fp16 = fp16
   weights with float32 inputs and outputs (the CPU EP runs the casts it inserts);
4. write ``tokenizer.gguf`` (metadata only, no tensors) and ``edgegen-onnx.json``;
5. everything is written into a temporary folder beside OUT_DIR and renamed into place at the
   end, so an error or Ctrl-C never leaves a half-written OUT_DIR.

int8 weights are QUInt8 (onnxruntime's U8U8 kernels): with QInt8 weights the U8S8 kernels of
AVX2 CPUs without VNNI multiply in saturating 16-bit pairs (vpmaddubsw) and can lose accuracy;
U8U8 has no such overflow and runs on every x86/ARM CPU. Measured on the tiny test llama on an
AVX2 CPU without VNNI: top-1 agreement with fp32 0.94 (QInt8) vs 0.97 (QUInt8) over 79 positions.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Callable, TypeVar
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path

from edgegen.backends.onnxruntime import (EXTERNAL_DATA_SUFFIX, FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE,
                                          TOKENIZER_FILE)
from edgegen.errors import ConversionError, MissingDependencyError

from .hf_checkpoint import CONFIG_FILE, HFConfig, SafetensorsCheckpoint
from .hf_tokenizer import TokenizerMetadata, read_hf_tokenizer

__all__ = ["export_onnx", "OnnxExportReport", "QUANTS"]

TASK = "text-generation-with-past"
INSTALL_HINT = "pip install 'edgegen[export-onnx]'"
# quant -> the onnxruntime tool that makes it (recorded in the manifest)
QUANTS: dict[str, str] = {
    "fp32": "none (optimum export as is)",
    "fp16": "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
    "int8": "onnxruntime.quantization.quantize_dynamic(weight_type=QUInt8)",
    "int4": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer(bits=4, symmetric)",
}
BLOCK_SIZES = (16, 32, 64, 128, 256)   # MatMulNBits block sizes: powers of two >= 16
_KEPT_FILES = (CONFIG_FILE, "generation_config.json")   # optimum's copies, kept beside the model
_MIB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class OnnxExportReport:
    output: Path
    model_file: str
    size_bytes: int          # the model file and its external data
    quant: str
    block_size: int | None   # int4 only
    arch: str
    seconds: float

    def summary(self) -> str:
        block = f" (block size {self.block_size})" if self.block_size else ""
        return (f"{self.output}: {self.arch}, ONNX {self.quant}{block}, {self.model_file} "
                f"{self.size_bytes / _MIB:.2f} MiB, exported in {self.seconds:.1f} s")


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"edgegen: {message}", file=sys.stderr, flush=True)


def _require(module: str, what: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs {module.split('.')[0]} ({e.name} is missing): "
                                     f"{INSTALL_HINT}") from None


def _version(dist: str) -> str | None:
    try:
        return pkg_metadata.version(dist)
    except pkg_metadata.PackageNotFoundError:
        return None


def _check_input(hf_dir: Path, quant: str, block_size: int) -> tuple[HFConfig, TokenizerMetadata]:
    if quant not in QUANTS:
        raise ConversionError(f"quant: expected one of {', '.join(QUANTS)} for ONNX, found '{quant}'")
    if quant == "int4" and block_size not in BLOCK_SIZES:
        raise ConversionError(f"block_size: expected one of {', '.join(map(str, BLOCK_SIZES))}, found {block_size}")
    if not hf_dir.is_dir():
        raise ConversionError(f"{hf_dir}: not a folder (expected a Hugging Face checkpoint folder)")
    cfg = HFConfig.from_hf_dir(hf_dir)
    SafetensorsCheckpoint(hf_dir).close()   # every safetensors header readable and consistent
    return cfg, read_hf_tokenizer(hf_dir, cfg.vocab_size)


def _export_fp32(hf_dir: Path, out: Path, progress: bool) -> None:
    """optimum's exporter: HF folder -> out/model.onnx (+ model.onnx_data past 2 GB), float32."""
    exporters = _require("optimum.exporters.onnx", "ONNX export")
    with warnings.catch_warnings():
        if not progress:   # torch.jit tracer warnings about shape-dependent branches are expected
            warnings.simplefilter("ignore")
        try:
            exporters.main_export(str(hf_dir), output=out, task=TASK, device="cpu", local_files_only=True,
                                  do_validation=False, framework="pt")
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
            raise ConversionError(f"{hf_dir}: optimum's ONNX export ({TASK}) failed: {e}") from e
    if not (out / MODEL_FILE).is_file():
        raise ConversionError(f"{hf_dir}: optimum's export wrote no {MODEL_FILE} (found {sorted(os.listdir(out))})")


def _quantize(src: Path, dst: Path, quant: str, block_size: int) -> None:
    """src (float32 model.onnx) -> dst with ``quant``'s weights."""
    external = src.with_name(src.name + EXTERNAL_DATA_SUFFIX).exists()   # past protobuf's 2 GB limit
    if quant == "int8":
        q = _require("onnxruntime.quantization", "int8 quantization")
        q.quantize_dynamic(src, dst, weight_type=q.QuantType.QUInt8, use_external_data_format=external)
    elif quant == "int4":
        onnx = _require("onnx", "int4 quantization")
        nbits = _require("onnxruntime.quantization.matmul_nbits_quantizer", "int4 quantization")
        config = nbits.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True)
        quantizer = nbits.MatMulNBitsQuantizer(onnx.load(src), block_size=block_size, is_symmetric=True,
                                               algo_config=config)
        quiet = logging.getLogger(nbits.__name__)   # it logs every node at INFO
        level, quiet.level = quiet.level, logging.WARNING
        try:
            quantizer.process()
        finally:
            quiet.setLevel(level)
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
    elif quant == "fp16":
        to_fp16(src, dst, external)
    else:
        raise AssertionError(quant)


def to_fp16(src: Path, dst: Path, external: bool) -> None:
    """float16 weights with float32 inputs and outputs (the CPU EP runs the casts it inserts)."""
    onnx = _require("onnx", "fp16 conversion")
    float16 = _require("onnxruntime.transformers.float16", "fp16 conversion")
    model = float16.convert_float_to_float16(onnx.load(src), keep_io_types=True)
    onnx.save_model(model, dst, save_as_external_data=external, location=dst.name + EXTERNAL_DATA_SUFFIX)


def _write_tokenizer(path: Path, cfg: HFConfig, tokenizer: TokenizerMetadata) -> None:
    """A GGUF file with only metadata: general.* and tokenizer.* (chat template included)."""
    from gguf import GGUFWriter

    from edgegen.constants import Key
    writer = GGUFWriter(None, cfg.arch.value)
    try:
        writer.add_string(Key.NAME.value, cfg.name)
        tokenizer.write(writer)
        writer.write_header_to_file(path=path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
    finally:
        writer.close()


def _manifest(hf_dir: Path, cfg: HFConfig, quant: str, block_size: int) -> dict:
    import edgegen
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "architecture": cfg.arch.value, "hf_architecture": cfg.hf_architecture,
        "source": str(hf_dir.resolve()),
        "model_file": MODEL_FILE, "tokenizer_file": TOKENIZER_FILE,
        "context_length": cfg.context_length, "vocab_size": cfg.vocab_size,
        "quantization": {"type": quant, "block_size": block_size if quant == "int4" else None,
                         "tool": QUANTS[quant], "onnxruntime_version": _version("onnxruntime")},
        "exporter": {"tool": "optimum.exporters.onnx.main_export", "task": TASK,
                     "optimum_onnx_version": _version("optimum-onnx")},
        "created_with": f"edgegen {edgegen.__version__}",
    }


def _build(hf_dir: Path, tmp: Path, cfg: HFConfig, tokenizer: TokenizerMetadata, quant: str, block_size: int,
           progress: bool) -> None:
    """Everything OUT_DIR holds, written into ``tmp``."""
    fp32 = tmp / "fp32"
    _log(progress, f"[1/3] exporting {cfg.hf_architecture} from {hf_dir} with optimum ({TASK}) ...")
    _export_fp32(hf_dir, fp32, progress)
    if quant == "fp32":
        for name in (MODEL_FILE, MODEL_FILE + EXTERNAL_DATA_SUFFIX):
            if (fp32 / name).exists():
                os.replace(fp32 / name, tmp / name)
    else:
        _log(progress, f"[2/3] quantizing to {quant} with {QUANTS[quant]} ...")
        _quantize(fp32 / MODEL_FILE, tmp / MODEL_FILE, quant, block_size)
    for name in _KEPT_FILES:
        if (fp32 / name).exists():
            os.replace(fp32 / name, tmp / name)
    shutil.rmtree(fp32)
    _log(progress, f"[3/3] writing {TOKENIZER_FILE} and {MANIFEST_FILE} ...")
    _write_tokenizer(tmp / TOKENIZER_FILE, cfg, tokenizer)
    (tmp / MANIFEST_FILE).write_text(json.dumps(_manifest(hf_dir, cfg, quant, block_size), indent=2) + "\n",
                                     encoding="utf-8")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing empty folder or earlier export there is replaced."""
    if out.is_dir() and (out / MANIFEST_FILE).is_file():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    os.replace(tmp, out)


def build_atomically(out: Path, build: Callable[[Path], T]) -> T:
    """``build(tmp)`` writes an ONNX folder into a temporary folder beside ``out``, which then
    replaces ``out`` (an empty folder or an earlier export); on any error or Ctrl-C nothing is left."""
    if not out.parent.is_dir():
        raise ConversionError(f"{out.parent}: output folder does not exist")
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST_FILE).is_file())):
        raise ConversionError(f"{out}: exists and is not an edgegen ONNX folder; remove it or choose another name")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        result = build(tmp)
        os.chmod(tmp, 0o755)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def export_onnx(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, quant: str = "fp32", block_size: int = 32,
                progress: bool = True) -> OnnxExportReport:
    """Export the HF checkpoint folder ``hf_dir`` (llama or qwen2) to the folder ``out_dir``:
    model.onnx, tokenizer.gguf, edgegen-onnx.json. ``quant``: fp32, fp16, int8 or int4
    (``block_size`` weights per 4-bit scale). Raises ConversionError naming the file or field at
    fault, MissingDependencyError when optimum-onnx or onnxruntime is missing. ``out_dir`` only
    appears once everything is written."""
    start = time.perf_counter()
    hf_dir, out = Path(hf_dir), Path(out_dir)
    cfg, tokenizer = _check_input(hf_dir, quant, block_size)
    build_atomically(out, lambda tmp: _build(hf_dir, tmp, cfg, tokenizer, quant, block_size, progress))
    size = sum(p.stat().st_size for p in out.iterdir() if p.name.startswith(MODEL_FILE))
    return OnnxExportReport(out, MODEL_FILE, size, quant, block_size if quant == "int4" else None, cfg.arch.value,
                            time.perf_counter() - start)
