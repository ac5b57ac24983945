"""HF -> GGUF conversion of tiny random models: every tensor's name, shape, type and bytes; the
metadata; checkpoint variants (sharded, bf16); typed errors; no partial file on failure."""
from __future__ import annotations

import json
import shutil

import gguf
import numpy as np
import pytest
from hf_names import gguf_to_hf_names

from edgegen.constants import GGMLType
from edgegen.converters import quant_plan
from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
from edgegen.converters.kquants import quantize_q4_k, quantize_q6_k
from edgegen.errors import ConversionError, UsageError

safetensors_numpy = pytest.importorskip("safetensors.numpy")

QUANTS = ["f32", "f16", "q8_0", "q4_0", "q4_k_m"]
MODELS = [("llama", "bpe", False), ("llama", "spm", False), ("qwen2", "bpe", False),
          ("llama", "bpe", True), ("llama", "spm", True), ("qwen2", "bpe", True)]
# The tiny models (conftest): hidden 64, 2 layers, 4 heads, 2 KV heads, FFN 128, vocab 512, context 256.
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, CONTEXT = 64, 2, 4, 2, 128, 512, 256
HEAD_DIM = HIDDEN // HEADS


def hf_weights(hf_dir) -> dict[str, np.ndarray]:
    return safetensors_numpy.load_file(hf_dir / "model.safetensors")


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order, written independently of the converter: row (h, half, i) -> (h, i, half)."""
    d = w.shape[0] // n_head
    order = np.arange(w.shape[0]).reshape(n_head, 2, d // 2).transpose(0, 2, 1).reshape(-1)
    return w[order]


def as_stored(name: str, w: np.ndarray, arch: str) -> np.ndarray:
    """The HF weight in the orientation the GGUF file stores."""
    if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
        return permute(w, HEADS if ".attn_q." in name else KV_HEADS)
    return w


def expected_type(quant: str, name: str, ndim: int, tied: bool) -> GGMLType:
    """Per-tensor types for the tiny models, whose 64/128-wide rows force the k-quant fallbacks."""
    if ndim == 1 or quant == "f32":
        return GGMLType.F32
    simple = {"f16": GGMLType.F16, "q8_0": GGMLType.Q8_0, "q4_0": GGMLType.Q4_0}
    if quant in simple:
        return simple[quant]
    # q4_k_m: Q6_K -> Q8_0 for output (token_embd when tied) and for attn_v / ffn_down on layer 1
    # (use_more_bits(1, 2)); Q4_K -> Q4_0 elsewhere.
    more_bits = name in ("blk.1.attn_v.weight", "blk.1.ffn_down.weight")
    head = name == ("token_embd.weight" if tied else "output.weight")
    return GGMLType.Q8_0 if more_bits or head else GGMLType.Q4_0


def reference_bytes(w: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """What the file must hold for weight ``w``: gguf-py's quantizers (ours for k-quants)."""
    if qtype == GGMLType.F32:
        return w.astype(np.float32)
    if qtype == GGMLType.F16:
        return w.astype(np.float16)
    if qtype == GGMLType.Q4_K:
        return quantize_q4_k(w)
    if qtype == GGMLType.Q6_K:
        return quantize_q6_k(w)
    return gguf.quants.quantize(w, qtype)


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("arch,tokenizer,tied", MODELS)
def test_every_tensor_name_shape_type_and_bytes(tiny_hf, tiny_gguf, arch, tokenizer, tied, quant):
    reader = gguf.GGUFReader(tiny_gguf(arch, quant, tokenizer, tied))
    weights = hf_weights(tiny_hf(arch, tokenizer, tied))
    to_hf = gguf_to_hf_names(LAYERS)
    names = [t.name for t in reader.tensors]
    expected = {g for g, h in to_hf.items() if h in weights}
    if tied:
        expected.discard("output.weight")
    assert set(names) == expected and len(names) == len(expected)
    assert names[0] == "token_embd.weight" and names[-1] == ("output_norm.weight" if tied else "output.weight")
    assert ("blk.0.attn_q.bias" in names) == (arch == "qwen2")
    for t in reader.tensors:
        w = as_stored(t.name, weights[to_hf[t.name]], arch)
        assert list(t.shape) == list(reversed(w.shape)), t.name
        assert t.tensor_type == expected_type(quant, t.name, w.ndim, tied), t.name
        stored = np.asarray(t.data)
        assert stored.tobytes() == reference_bytes(w, t.tensor_type).tobytes(), t.name


@pytest.mark.parametrize("arch,tokenizer,tied", MODELS)
def test_f32_export_round_trips_to_the_hf_weights(tiny_hf, tiny_gguf, arch, tokenizer, tied):
    reader = gguf.GGUFReader(tiny_gguf(arch, "f32", tokenizer, tied))
    weights = hf_weights(tiny_hf(arch, tokenizer, tied))
    to_hf = gguf_to_hf_names(LAYERS)
    for t in reader.tensors:
        back = np.asarray(t.data, dtype=np.float32)
        if arch == "llama" and t.name.endswith(("attn_q.weight", "attn_k.weight")):
            n_head = HEADS if "attn_q" in t.name else KV_HEADS
            back = back.reshape(n_head, HEAD_DIM // 2, 2, HIDDEN).swapaxes(1, 2).reshape(back.shape)
        np.testing.assert_array_equal(back, weights[to_hf[t.name]], err_msg=t.name)
    # the perturbed norms really are away from 1, so this test would notice them being dropped
    assert np.abs(weights["model.norm.weight"] - 1).max() > 0.05


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_model_metadata(tiny_gguf, arch):
    reader = gguf.GGUFReader(tiny_gguf(arch, "q4_k_m"))
    meta = {name: field.contents() for name, field in reader.fields.items()}
    assert meta["general.architecture"] == arch
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert meta["general.quantization_version"] == gguf.GGML_QUANT_VERSION
    expected = {"context_length": CONTEXT, "embedding_length": HIDDEN, "block_count": LAYERS,
                "feed_forward_length": FFN, "attention.head_count": HEADS, "attention.head_count_kv": KV_HEADS,
                "rope.dimension_count": HEAD_DIM, "vocab_size": VOCAB}
    assert {k: meta[f"{arch}.{k}"] for k in expected} == expected
    assert meta[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5, rel=1e-6)
    assert meta[f"{arch}.rope.freq_base"] == 10000.0


def test_report_matches_the_file(tiny_hf, tmp_path):
    out = tmp_path / "m.gguf"
    report = convert_hf_to_gguf(tiny_hf("qwen2", "bpe"), out, "q4_0", progress=False)
    assert report.output == out and report.size_bytes == out.stat().st_size and report.quant == "q4_0"
    reader = gguf.GGUFReader(out)
    assert [(r.name, r.qtype) for r in report.tensors] == [(t.name, t.tensor_type.name) for t in reader.tensors]
    for r in report.tensors:
        bound = {"F32": 0.0, "Q8_0": 0.01, "Q4_0": 0.12}[r.qtype]
        assert r.rel_rms_error <= bound, r
    assert str(out) in report.summary() and "Q4_0" in report.summary()


def _copy(tiny_hf, tmp_path, arch="llama", tokenizer="bpe"):
    return shutil.copytree(tiny_hf(arch, tokenizer), tmp_path / "hf")


def test_sharded_and_bf16_checkpoints(tiny_hf, tmp_path):
    src = tiny_hf("llama", "spm")
    single = convert_hf_to_gguf(src, tmp_path / "single.gguf", "f16", progress=False).output
    # 1. Sharded: split the tensors over two files and an index.
    sharded = _copy(tiny_hf, tmp_path, "llama", "spm")
    weights = hf_weights(sharded)
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        safetensors_numpy.save_file({n: weights[n] for n in part}, sharded / file, metadata={"format": "pt"})
    (sharded / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {n: f for f, part in shards.items() for n in part}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    out = convert_hf_to_gguf(sharded, tmp_path / "sharded.gguf", "f16", progress=False).output
    assert _content(out) == _content(single)
    # 2. bf16: stored as raw bf16 bits; the f32 export holds exactly those values.
    bits = {n: (w.view(np.uint32) >> 16).astype(np.uint16) for n, w in weights.items()}
    bf16_dir = tmp_path / "bf16"
    shutil.copytree(src, bf16_dir)
    header = {n: {"dtype": "BF16", "shape": list(b.shape)} for n, b in bits.items()}
    _write_raw_safetensors(bf16_dir / "model.safetensors", header, bits)
    reader = gguf.GGUFReader(convert_hf_to_gguf(bf16_dir, tmp_path / "bf16.gguf", "f32", progress=False).output)
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    upcast = (bits["model.embed_tokens.weight"].astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(np.asarray(embd.data), upcast)


def _content(path) -> tuple:
    """A GGUF file's metadata (but general.name, which is the folder's name) and tensor bytes."""
    reader = gguf.GGUFReader(path)
    meta = {k: repr(f.contents()) for k, f in reader.fields.items() if k != "general.name"}
    return meta, [(t.name, t.tensor_type, np.asarray(t.data).tobytes()) for t in reader.tensors]


def _write_raw_safetensors(path, header: dict, arrays: dict) -> None:
    offset, meta = 0, {}
    for name, entry in header.items():
        nbytes = arrays[name].nbytes
        meta[name] = {**entry, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(meta).encode()
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for name in header:
            f.write(arrays[name].tobytes())


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_conversion_leaves_no_file(tiny_hf, tmp_path, monkeypatch, exc):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    previous = out_dir / "kept.gguf"
    previous.write_bytes(b"an older file the failed conversion must not touch")
    real, calls = quant_plan.quantize_tensor, []

    def failing(data, qtype):
        calls.append(qtype)
        if len(calls) == 5:
            raise exc("stopped mid-way")
        return real(data, qtype)

    monkeypatch.setattr(quant_plan, "quantize_tensor", failing)
    for target in (out_dir / "new.gguf", previous):
        calls.clear()
        with pytest.raises(exc):
            convert_hf_to_gguf(tiny_hf("llama", "bpe"), target, "q8_0", progress=False)
        assert len(calls) == 5
    assert sorted(p.name for p in out_dir.iterdir()) == ["kept.gguf"]
    assert previous.read_bytes().startswith(b"an older file")


def test_unsupported_architecture_names_the_field(tiny_hf, tmp_path):
    hf = _copy(tiny_hf, tmp_path)
    cfg = json.loads((hf / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match=r"config\.json.*'architectures'.*GPT2LMHeadModel"):
        convert_hf_to_gguf(hf, tmp_path / "x.gguf", "f32", progress=False)
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("field,value,message", [
    ("rope_scaling", {"type": "linear", "factor": 2.0}, "'rope_scaling'"),
    ("num_hidden_layers", "two", "'num_hidden_layers' should be int"),
    ("intermediate_size", 96, r"'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"),
    ("num_hidden_layers", 3, r"no tensor for blk\.2\.attn_norm\.weight"),
])
def test_config_errors_name_the_field_or_tensor(tiny_hf, tmp_path, field, value, message):
    hf = _copy(tiny_hf, tmp_path)
    cfg = json.loads((hf / "config.json").read_text())
    cfg[field] = value
    (hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match=message):
        convert_hf_to_gguf(hf, tmp_path / "x.gguf", "f32", progress=False)


def test_missing_safetensors_names_the_file(tiny_hf, tmp_path):
    hf = _copy(tiny_hf, tmp_path)
    (hf / "model.safetensors").unlink()
    with pytest.raises(ConversionError, match=r"no model\.safetensors"):
        convert_hf_to_gguf(hf, tmp_path / "x.gguf", "f32", progress=False)
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1-of-2.safetensors"}}))
    with pytest.raises(ConversionError, match=r"index\.json.*'model-1-of-2\.safetensors'"):
        convert_hf_to_gguf(hf, tmp_path / "x.gguf", "f32", progress=False)


def test_unknown_and_missing_tensors_are_named(tiny_hf, tmp_path):
    hf = _copy(tiny_hf, tmp_path)
    weights = hf_weights(hf)
    extra = dict(weights, **{"model.layers.0.mlp.extra_proj.weight": np.zeros((2, 2), np.float32)})
    safetensors_numpy.save_file(extra, hf / "model.safetensors")
    with pytest.raises(ConversionError, match=r"model\.safetensors: tensor 'model\.layers\.0\.mlp\.extra_proj"):
        convert_hf_to_gguf(hf, tmp_path / "x.gguf", "f32", progress=False)
    del weights["model.layers.1.post_attention_layernorm.weight"]
    safetensors_numpy.save_file(weights, hf / "model.safetensors")
    with pytest.raises(ConversionError, match=r"no tensor for blk\.1\.ffn_norm\.weight"):
        convert_hf_to_gguf(hf, tmp_path / "x.gguf", "f32", progress=False)


def test_bad_arguments(tiny_hf, tmp_path):
    with pytest.raises(UsageError, match="q3_k"):
        convert_hf_to_gguf(tiny_hf(), tmp_path / "x.gguf", "q3_k", progress=False)
    with pytest.raises(ConversionError, match="not a folder"):
        convert_hf_to_gguf(tmp_path / "nowhere", tmp_path / "x.gguf", "f32", progress=False)
    with pytest.raises(ConversionError, match="output folder does not exist"):
        convert_hf_to_gguf(tiny_hf(), tmp_path / "no" / "x.gguf", "f32", progress=False)
