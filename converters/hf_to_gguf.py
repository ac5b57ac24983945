"""Hugging Face checkpoint folder -> one GGUF file that llama.cpp and edgegen load.

    convert_hf_to_gguf("TinyLlama-1.1B", "tinyllama-q4_k_m.gguf", quant="q4_k_m")

Steps:
1. read config.json (``HFConfig``), map every safetensors tensor to its GGUF name and check its
   shape against the config (``_plan``): unknown, missing or misshapen tensors stop here,
   before anything is written;
2. read tokenizer.json into ``tokenizer.*`` metadata (``hf_tokenizer``);
3. write header, metadata and tensor table, then stream the tensors one at a time: load
   (memory-mapped), permute llama's Q/K rows, quantize, write. Peak memory is about one tensor;
4. the file is written under a temporary name in the destination folder and renamed into
   place at the end, so an error or Ctrl-C never leaves a partial file behind.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_VERSION, GGUFWriter

from edgegen.atomic import write_atomically
from edgegen.constants import GGMLType, Key
from edgegen.errors import ConversionError

from . import quant_plan
from .hf_checkpoint import HFConfig, SafetensorsCheckpoint
from .hf_tokenizer import TokenizerMetadata, read_hf_tokenizer
from .tensor_names import (BLOCK_PATTERN, BLOCK_TENSORS, GLOBAL_TENSORS, IGNORED_HF_SUFFIXES, PERMUTED_HEADS,
                           REQUIRED_BIASES, block_name)

__all__ = ["convert_hf_to_gguf", "ConversionReport", "TensorReport", "permute_for_rope"]

FILE_MODE = 0o644   # written GGUF files: rw-r--r--, whatever the umask
_MIB = 1024 * 1024


@dataclass(frozen=True)
class TensorReport:
    name: str                  # GGUF name
    shape: tuple[int, ...]     # NumPy (HF) shape: (rows, cols)
    qtype: str                 # GGML type name, e.g. "Q4_K"
    rel_rms_error: float       # ||W - dequant(quant(W))|| / ||W||


@dataclass(frozen=True)
class ConversionReport:
    output: Path
    size_bytes: int
    quant: str
    arch: str
    tensors: tuple[TensorReport, ...]

    def summary(self) -> str:
        counts = Counter(t.qtype for t in self.tensors)
        lines = [f"{self.output}: {self.arch}, {self.quant}, {len(self.tensors)} tensors, "
                 f"{self.size_bytes / _MIB:.2f} MiB",
                 "types: " + ", ".join(f"{qtype} x{n}" for qtype, n in sorted(counts.items()))]
        for qtype in sorted(counts):
            errors = [t for t in self.tensors if t.qtype == qtype]
            worst = max(errors, key=lambda t: t.rel_rms_error)
            mean = sum(t.rel_rms_error for t in errors) / len(errors)
            lines.append(f"  {qtype:5s} relative RMS error: mean {mean:.2e}, worst {worst.rel_rms_error:.2e} "
                         f"({worst.name})")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Planned:
    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]
    qtype: GGMLType
    permute_heads: int | None   # llama Q/K: rows are split into this many heads and permuted


def permute_for_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF Q/K rows -> llama.cpp's order for NORMAL (adjacent-pair) RoPE.

    HF rotates the two halves of each head (x[i], x[i + d/2]); llama.cpp's llama graph rotates
    adjacent pairs (x[2i], x[2i+1]). Interleaving each head's halves makes the two agree:
    row (head, half, i) moves to (head, i, half). Works on weights (rows, cols) and biases (rows,).
    """
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _expected_shapes(cfg: HFConfig) -> dict[str, tuple[int, ...]]:
    """GGUF name -> NumPy shape of every tensor the config implies (biases of qwen2 included)."""
    h, ffn, q_rows, kv_rows = cfg.hidden_size, cfg.ffn_size, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    block = {"attn_norm.weight": (h,), "attn_q.weight": (q_rows, h), "attn_k.weight": (kv_rows, h),
             "attn_v.weight": (kv_rows, h), "attn_output.weight": (h, q_rows), "ffn_norm.weight": (h,),
             "ffn_gate.weight": (ffn, h), "ffn_up.weight": (ffn, h), "ffn_down.weight": (h, ffn),
             "attn_q.bias": (q_rows,), "attn_k.bias": (kv_rows,), "attn_v.bias": (kv_rows,)}
    shapes = {"token_embd.weight": (cfg.vocab_size, h), "output_norm.weight": (h,),
              "output.weight": (cfg.vocab_size, h)}
    for layer in range(cfg.n_layers):
        shapes.update({block_name(layer, suffix): shape for suffix, shape in block.items()})
    return shapes


def _required(cfg: HFConfig, present: set[str]) -> list[str]:
    """GGUF names that must exist, in file order (llama.cpp's: embeddings, blocks, output)."""
    names = ["token_embd.weight"]
    for layer in range(cfg.n_layers):
        for suffix in dict.fromkeys(BLOCK_TENSORS.values()):
            name = block_name(layer, suffix)
            optional_bias = suffix.endswith(".bias") and suffix not in REQUIRED_BIASES[cfg.arch]
            if name in present or not optional_bias:
                names.append(name)
    names.append("output_norm.weight")
    if not cfg.tie_embeddings:
        names.append("output.weight")
    return names


def _gguf_name(hf_name: str) -> str | None:
    """GGUF name of a HF tensor; None for buffers to skip; KeyError if unknown."""
    if hf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[hf_name]
    match = BLOCK_PATTERN.match(hf_name)
    if match and match.group(2) in IGNORED_HF_SUFFIXES:
        return None
    if match and match.group(2) in BLOCK_TENSORS:
        return block_name(int(match.group(1)), BLOCK_TENSORS[match.group(2)])
    raise KeyError(hf_name)


def _plan(cfg: HFConfig, ckpt: SafetensorsCheckpoint, scheme: quant_plan.QuantScheme) -> list[_Planned]:
    expected = _expected_shapes(cfg)
    found: dict[str, str] = {}
    for hf_name in ckpt.names():
        try:
            name = _gguf_name(hf_name)
        except KeyError:
            raise ConversionError(f"{ckpt.source(hf_name)}: tensor {hf_name!r} has no GGUF equivalent for "
                                  f"{cfg.hf_architecture}") from None
        if name is None or (name == "output.weight" and cfg.tie_embeddings):
            continue   # tied: lm_head is token_embd by definition
        if name not in expected:
            raise ConversionError(f"{ckpt.source(hf_name)}: tensor {hf_name!r} is outside the model config.json "
                                  f"describes ({cfg.n_layers} layers)")
        if ckpt.shape(hf_name) != expected[name]:
            raise ConversionError(f"{ckpt.source(hf_name)}: tensor {hf_name!r} has shape {list(ckpt.shape(hf_name))}, "
                                  f"config.json implies {list(expected[name])}")
        found[name] = hf_name
    permuted = PERMUTED_HEADS[cfg.arch]
    plan = []
    for name in _required(cfg, set(found)):
        if name not in found:
            raise ConversionError(f"{ckpt.source(ckpt.names()[0]).parent}: the checkpoint has no tensor for "
                                  f"{name} (expected by config.json)")
        suffix = name.split(".", 2)[2] if name.startswith("blk.") else name
        heads = getattr(cfg, permuted[suffix]) if suffix in permuted else None
        qtype = quant_plan.tensor_type(scheme, name, expected[name], cfg.n_layers, not cfg.tie_embeddings)
        plan.append(_Planned(name, found[name], expected[name], qtype, heads))
    return plan


def _write_model_metadata(writer: GGUFWriter, cfg: HFConfig, scheme: quant_plan.QuantScheme) -> None:
    arch = cfg.arch.value
    writer.add_string(Key.NAME.value, cfg.name)
    writer.add_uint32(Key.FILE_TYPE.value, int(scheme.file_type))
    writer.add_quantization_version(GGML_QUANT_VERSION)
    writer.add_uint32(Key.CONTEXT_LENGTH.of(arch), cfg.context_length)
    writer.add_uint32(Key.EMBEDDING_LENGTH.of(arch), cfg.hidden_size)
    writer.add_uint32(Key.BLOCK_COUNT.of(arch), cfg.n_layers)
    writer.add_uint32(Key.FEED_FORWARD_LENGTH.of(arch), cfg.ffn_size)
    writer.add_uint32(Key.HEAD_COUNT.of(arch), cfg.n_heads)
    writer.add_uint32(Key.HEAD_COUNT_KV.of(arch), cfg.n_kv_heads)
    writer.add_float32(Key.RMS_EPS.of(arch), cfg.rms_eps)
    writer.add_float32(Key.ROPE_FREQ_BASE.of(arch), cfg.rope_theta)
    writer.add_uint32(Key.ROPE_DIMENSION_COUNT.of(arch), cfg.head_dim)
    writer.add_uint32(Key.VOCAB_SIZE.of(arch), cfg.vocab_size)
    if cfg.head_dim * cfg.n_heads != cfg.hidden_size:
        writer.add_uint32(Key.KEY_LENGTH.of(arch), cfg.head_dim)
        writer.add_uint32(Key.VALUE_LENGTH.of(arch), cfg.head_dim)


def _write_file(path: Path, cfg: HFConfig, tokenizer: TokenizerMetadata, ckpt: SafetensorsCheckpoint,
                plan: list[_Planned], scheme: quant_plan.QuantScheme, progress: bool) -> list[TensorReport]:
    from tqdm import tqdm  # a dependency of gguf

    writer = GGUFWriter(None, cfg.arch.value)
    try:
        _write_model_metadata(writer, cfg, scheme)
        tokenizer.write(writer)
        for t in plan:
            shape, dtype, nbytes = quant_plan.stored_array_spec(t.qtype, t.shape)
            raw = t.qtype if dtype == np.uint8 else None
            writer.add_tensor_info(t.gguf_name, shape, dtype, nbytes, raw_dtype=raw)
        writer.write_header_to_file(path=path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        reports = []
        total = sum(int(np.prod(t.shape)) for t in plan)
        with tqdm(total=total, unit="param", unit_scale=True, desc=f"{scheme.name} {path.name}",
                  disable=not progress) as bar:
            for t in plan:
                bar.set_postfix_str(t.gguf_name, refresh=False)
                data = ckpt.load(t.hf_name)
                if t.permute_heads is not None:
                    data = permute_for_rope(data, t.permute_heads)
                stored = quant_plan.quantize_tensor(data, t.qtype)
                writer.write_tensor_data(stored)
                error = quant_plan.relative_rms_error(data, stored, t.qtype)
                reports.append(TensorReport(t.gguf_name, t.shape, t.qtype.name, error))
                bar.update(int(np.prod(t.shape)))
        return reports
    finally:
        writer.close()


def convert_hf_to_gguf(hf_dir: str | os.PathLike, out_path: str | os.PathLike, quant: str,
                       progress: bool = True) -> ConversionReport:
    """Convert the HF checkpoint folder ``hf_dir`` to ``out_path`` with ``quant`` in
    ``quant_plan.SCHEMES`` (f32, f16, q8_0, q4_0, q4_k_m). Raises ConversionError naming the
    file and field at fault; ``out_path`` is only created once the whole file is written."""
    hf_dir, out = Path(hf_dir), Path(out_path)
    scheme = quant_plan.scheme_for(quant)
    if not hf_dir.is_dir():
        raise ConversionError(f"{hf_dir}: not a folder (expected a Hugging Face checkpoint folder)")
    if not out.parent.is_dir():
        raise ConversionError(f"{out.parent}: output folder does not exist")
    cfg = HFConfig.from_hf_dir(hf_dir)
    ckpt = SafetensorsCheckpoint(hf_dir)
    try:
        plan = _plan(cfg, ckpt, scheme)
        tokenizer = read_hf_tokenizer(hf_dir, cfg.vocab_size)
        reports = write_atomically(out, lambda tmp: _write_file(tmp, cfg, tokenizer, ckpt, plan, scheme, progress),
                                   mode=FILE_MODE)
    finally:
        ckpt.close()
    return ConversionReport(out, out.stat().st_size, scheme.name, cfg.arch.value, tuple(reports))
