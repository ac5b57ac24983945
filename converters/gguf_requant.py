"""GGUF file -> GGUF file with another ``--quant`` scheme (llama-quantize's job, in NumPy).

    requantize_gguf("smollm2-q4_1.gguf", "smollm2-q8_0.gguf", quant="q8_0")

Steps:
1. read the source with gguf-py's GGUFReader (any tensor type gguf-py can dequantize); a file it
   cannot parse (truncated, not GGUF) stops here with ModelFileError naming it;
2. plan each tensor's new type with the same per-tensor rules as the Hugging Face converter
   (``quant_plan.tensor_type``: 1-D tensors stay F32, Q4_K_M's Q6_K layers, k-quant fallbacks);
3. copy every metadata key (tokenizer, chat template, hyper-parameters) except the GGUF header
   fields, ``general.file_type`` and ``general.quantization_version`` (written anew), and record
   the source in ``general.source.file`` / ``general.source.file_type`` / ``general.quantized_by``;
4. stream the tensors one at a time: dequantize (``gguf.quants.dequantize``), quantize
   (``quant_plan.quantize_tensor``), write. Q/K rows are already in llama.cpp's order: no
   permutation. The file is written under a temporary name beside the target and renamed at the end.

Requantizing cannot restore precision the source has lost: the per-tensor error reported is the
error *added* by the new type, relative to the source's dequantized values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_VERSION, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
from gguf import quants as gguf_quants

import edgegen
from edgegen.atomic import write_atomically
from edgegen.constants import GGMLType, Key
from edgegen.errors import ConversionError, ModelFileError

from . import quant_plan
from .hf_to_gguf import FILE_MODE, ConversionReport, TensorReport

__all__ = ["requantize_gguf", "read_gguf", "dequantized_tensors"]

# Keys the writer produces itself or that describe the old encoding.
_SKIPPED_KEYS = frozenset({Key.ARCHITECTURE.value, Key.FILE_TYPE.value, "general.quantization_version",
                           "general.alignment"})
SOURCE_FILE_KEY = "general.source.file"
SOURCE_TYPE_KEY = "general.source.file_type"
QUANTIZED_BY_KEY = "general.quantized_by"
OUTPUT_NAME, BLOCK_COUNT = "output.weight", "block_count"


@dataclass(frozen=True)
class _Planned:
    name: str
    shape: tuple[int, ...]     # NumPy shape: (rows, cols) or (n,)
    source_type: GGMLType
    qtype: GGMLType


def read_gguf(path: str | os.PathLike) -> GGUFReader:
    """gguf-py's reader on ``path``, or ModelFileError naming the file when it cannot be parsed."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such GGUF file")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as e:   # gguf-py's parse errors
        raise ModelFileError(f"{path}: not a readable GGUF file (truncated or malformed): {e}") from None


def _numpy_shape(tensor) -> tuple[int, ...]:
    """GGUF dims (ne0 = row length first) -> NumPy shape (rows, cols); trailing 1s dropped."""
    dims = [int(d) for d in tensor.shape]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return tuple(reversed(dims))


def dequantized_tensors(reader: GGUFReader, path: Path):
    """(name, GGMLType, float32 array in NumPy shape) for each tensor, in file order."""
    for t in reader.tensors:
        shape = _numpy_shape(t)
        try:
            values = gguf_quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise ConversionError(f"{path}: tensor {t.name!r} has type {t.tensor_type.name}, which gguf-py "
                                  "cannot dequantize") from None
        yield t.name, GGMLType(int(t.tensor_type)), np.asarray(values, dtype=np.float32).reshape(shape)


def _plan(reader: GGUFReader, path: Path, arch: str, scheme: quant_plan.QuantScheme) -> list[_Planned]:
    n_layers = reader.fields.get(f"{arch}.{BLOCK_COUNT}")
    if n_layers is None:
        raise ModelFileError(f"{path}: missing metadata key '{arch}.{BLOCK_COUNT}'")
    n_layers = int(n_layers.contents())
    has_output = any(t.name == OUTPUT_NAME for t in reader.tensors)
    plan = []
    for t in reader.tensors:
        shape = _numpy_shape(t)
        if len(shape) > 2:
            raise ConversionError(f"{path}: tensor {t.name!r} has {len(shape)} dimensions; expected at most 2")
        qtype = quant_plan.tensor_type(scheme, t.name, shape, n_layers, has_output)
        plan.append(_Planned(t.name, shape, GGMLType(int(t.tensor_type)), qtype))
    return plan


def _copy_metadata(reader: GGUFReader, writer: GGUFWriter, path: Path, scheme: quant_plan.QuantScheme) -> None:
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in _SKIPPED_KEYS:
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        if sub_type == GGUFValueType.ARRAY:
            raise ConversionError(f"{path}: metadata key {name!r} is an array of arrays, which is not copied")
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub_type)
    writer.add_uint32(Key.FILE_TYPE.value, int(scheme.file_type))
    writer.add_quantization_version(GGML_QUANT_VERSION)
    source_type = reader.fields.get(Key.FILE_TYPE.value)
    writer.add_string(SOURCE_FILE_KEY, path.name)
    if source_type is not None:
        value = int(source_type.contents())
        try:
            writer.add_string(SOURCE_TYPE_KEY, LlamaFileType(value).name)
        except ValueError:
            writer.add_string(SOURCE_TYPE_KEY, str(value))
    writer.add_string(QUANTIZED_BY_KEY, f"edgegen {edgegen.__version__}")


def _write_file(out: Path, reader: GGUFReader, path: Path, arch: str, plan: list[_Planned],
                scheme: quant_plan.QuantScheme, progress: bool) -> list[TensorReport]:
    from tqdm import tqdm  # a dependency of gguf

    writer = GGUFWriter(None, arch)
    try:
        _copy_metadata(reader, writer, path, scheme)
        for t in plan:
            shape, dtype, nbytes = quant_plan.stored_array_spec(t.qtype, t.shape)
            writer.add_tensor_info(t.name, shape, dtype, nbytes, raw_dtype=t.qtype if dtype == np.uint8 else None)
        writer.write_header_to_file(path=out)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        reports = []
        with tqdm(total=sum(int(np.prod(t.shape)) for t in plan), unit="param", unit_scale=True,
                  desc=f"{scheme.name} {out.name}", disable=not progress) as bar:
            for t, (name, _, data) in zip(plan, dequantized_tensors(reader, path)):
                assert name == t.name
                bar.set_postfix_str(name, refresh=False)
                stored = quant_plan.quantize_tensor(data, t.qtype)
                writer.write_tensor_data(stored)
                error = quant_plan.relative_rms_error(data, stored, t.qtype)
                reports.append(TensorReport(name, t.shape, t.qtype.name, error))
                bar.update(int(np.prod(t.shape)))
        return reports
    finally:
        writer.close()


def requantize_gguf(src: str | os.PathLike, out_path: str | os.PathLike, quant: str,
                    progress: bool = True) -> ConversionReport:
    """Rewrite the GGUF file ``src`` as ``out_path`` with ``quant`` in ``quant_plan.SCHEMES``
    (f32, f16, q8_0, q4_0, q4_k_m). Raises ModelFileError for an unreadable source and
    ConversionError for one that cannot be converted; ``out_path`` only appears once complete."""
    path, out = Path(src), Path(out_path)
    scheme = quant_plan.scheme_for(quant)
    if not out.parent.is_dir():
        raise ConversionError(f"{out.parent}: output folder does not exist")
    if out.exists() and out.resolve() == path.resolve():
        raise ConversionError(f"{out}: the output would overwrite the input; choose another name")
    reader = read_gguf(path)
    arch_field = reader.fields.get(Key.ARCHITECTURE.value)
    if arch_field is None:
        raise ModelFileError(f"{path}: missing metadata key '{Key.ARCHITECTURE.value}'")
    arch = str(arch_field.contents())
    plan = _plan(reader, path, arch, scheme)
    reports = write_atomically(out, lambda tmp: _write_file(tmp, reader, path, arch, plan, scheme, progress),
                               mode=FILE_MODE)
    return ConversionReport(out, out.stat().st_size, scheme.name, arch, tuple(reports))
