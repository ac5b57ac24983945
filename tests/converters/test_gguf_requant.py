"""GGUF -> GGUF requantization (converters/gguf_requant.py) of tiny GGUFs made from tiny HF models.

References: gguf-py (``gguf.quants.quantize`` of the same dequantized values, bit for bit; the
reader's metadata), llama.cpp through llama-cpp-python (loads the output; greedy tokens equal
edgegen's native backend's), and quant_plan's per-tensor types.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest

import edgegen
from edgegen.cli import main
from edgegen.constants import GGMLType
from edgegen.converters import quant_plan
from edgegen.converters.gguf_requant import SOURCE_FILE_KEY, SOURCE_TYPE_KEY, requantize_gguf
from edgegen.errors import ModelFileError

PROMPT = "Once upon a time there was a little girl who"
N_GREEDY = 12
REWRITTEN = {"general.file_type", "general.quantization_version", SOURCE_FILE_KEY, SOURCE_TYPE_KEY,
             "general.quantized_by"}


def fields(path) -> dict:
    return {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items() if not k.startswith("GGUF.")}


@pytest.mark.parametrize("source", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("quant", ["q8_0", "q4_0"])
def test_tensors_equal_gguf_py_quantize_bit_for_bit(tiny_gguf, tmp_path, source, quant):
    src = tiny_gguf("llama", source)
    out = tmp_path / f"{quant}.gguf"
    report = requantize_gguf(src, out, quant, progress=False)
    before = {t.name: t for t in gguf.GGUFReader(src).tensors}
    after = gguf.GGUFReader(out).tensors
    assert [t.name for t in after] == list(before)
    qtype = GGMLType[quant.upper()]
    for t in after:
        values = gguf.quants.dequantize(before[t.name].data, before[t.name].tensor_type)
        if values.ndim == 1:
            assert t.tensor_type == GGMLType.F32
            np.testing.assert_array_equal(t.data, values, err_msg=t.name)
            continue
        assert t.tensor_type == qtype, t.name
        want = gguf.quants.quantize(np.ascontiguousarray(values, dtype=np.float32), qtype)
        np.testing.assert_array_equal(np.asarray(t.data), want, err_msg=t.name)
    assert {r.name for r in report.tensors} == set(before)


def test_q4_k_m_types_follow_the_quant_plan(tiny_gguf, tmp_path):
    out = tmp_path / "q4_k_m.gguf"
    requantize_gguf(tiny_gguf("llama", "f32"), out, "q4_k_m", progress=False)
    scheme = quant_plan.scheme_for("q4_k_m")
    for t in gguf.GGUFReader(out).tensors:
        shape = tuple(int(d) for d in reversed(t.shape)) if len(t.shape) > 1 and t.shape[1] > 1 else (int(t.shape[0]),)
        assert t.tensor_type == quant_plan.tensor_type(scheme, t.name, shape, 2, True), t.name


def test_metadata_is_copied_and_the_source_recorded(tiny_gguf, tmp_path):
    src = tiny_gguf("llama", "f16")
    out = tmp_path / "q4_0.gguf"
    requantize_gguf(src, out, "q4_0", progress=False)
    before, after = fields(src), fields(out)
    assert set(after) - REWRITTEN == set(before) - REWRITTEN
    for key in set(before) - REWRITTEN:
        assert after[key] == before[key], key
    assert after["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q4_0
    assert after[SOURCE_FILE_KEY] == src.name
    assert after[SOURCE_TYPE_KEY] == "MOSTLY_F16"


@pytest.mark.parametrize("quant", ["q8_0", "q4_0"])
def test_output_loads_in_edgegen_and_llama_cpp_with_equal_greedy_tokens(tiny_gguf, tmp_path, quant):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    out = tmp_path / f"{quant}.gguf"
    assert main(["convert", str(tiny_gguf("llama", "f16")), str(out), "--quant", quant, "--quiet"]) == 0
    native = edgegen.load(out, threads=2)
    peer = edgegen.load(out, backend="llama.cpp", threads=2)
    want = [t.id for t in native.generate(PROMPT, max_tokens=N_GREEDY, ignore_eos=True)]
    assert [t.id for t in peer.generate(PROMPT, max_tokens=N_GREEDY, ignore_eos=True)] == want


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_bad_input_is_a_typed_error_naming_the_file_and_leaves_nothing(tiny_gguf, tmp_path, damage):
    data = tiny_gguf("llama", "f32").read_bytes()
    bad = tmp_path / f"{damage}.gguf"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:8] + b"\xff" * 200)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ModelFileError, match=bad.name):
        requantize_gguf(bad, out_dir / "x.gguf", "q8_0", progress=False)
    assert list(out_dir.iterdir()) == []
