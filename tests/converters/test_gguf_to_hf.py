"""GGUF -> HF checkpoint -> ONNX (converters/gguf_to_hf.py) on tiny GGUFs made from tiny HF models.

References: the original HF checkpoint (tensors and tokenizer metadata, exact), transformers'
logits of the rebuilt checkpoint against edgegen's native logits of the same GGUF, and the
native backend's greedy tokens for the ONNX export run by edgegen's onnxruntime backend.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import edgegen  # noqa: E402
from edgegen.cli import main  # noqa: E402
from edgegen.converters.gguf_to_hf import gguf_to_hf, unpermute_for_rope  # noqa: E402
from edgegen.converters.hf_to_gguf import permute_for_rope  # noqa: E402
from edgegen.converters.hf_tokenizer import read_hf_tokenizer  # noqa: E402
from edgegen.errors import UnsupportedModelError  # noqa: E402

TEXT = "Once upon a time there was a little girl who lived in a village near the forest."
LOGIT_ATOL = {"f32": 1e-3, "f16": 1e-3}   # transformers float32 vs native kernels (measured ~1e-5)
N_GREEDY = 12


def test_unpermute_inverts_permute():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    np.testing.assert_array_equal(unpermute_for_rope(permute_for_rope(w, 8), 8), w)
    b = np.arange(48, dtype=np.float32)
    np.testing.assert_array_equal(unpermute_for_rope(permute_for_rope(b, 3), 3), b)


@pytest.mark.parametrize("arch,tied", [("llama", False), ("llama", True), ("qwen2", False)])
def test_f32_round_trip_gives_back_the_hf_checkpoint(tiny_hf, tiny_gguf, tmp_path, arch, tied):
    """HF -> GGUF f32 -> HF: every tensor bit for bit, the tokenizer metadata equal."""
    original = tiny_hf(arch, "bpe", tied)
    back = gguf_to_hf(tiny_gguf(arch, "f32", "bpe", tied), tmp_path / "hf")
    want = safetensors_numpy.load_file(original / "model.safetensors")
    got = safetensors_numpy.load_file(back / "model.safetensors")
    if tied:
        want.pop("lm_head.weight", None)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    config = json.loads((back / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied
    vocab = config["vocab_size"]
    assert read_hf_tokenizer(back, vocab) == read_hf_tokenizer(original, vocab)


@pytest.mark.parametrize("quant", ["f32", "f16"])
def test_transformers_logits_equal_native_logits(tiny_gguf, tmp_path, quant):
    path = tiny_gguf("llama", quant, "bpe")
    hf_dir = gguf_to_hf(path, tmp_path / "hf")
    native = edgegen.load(path, threads=2)
    ids = native.tokenizer.encode(TEXT)
    want = native.logits(ids)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(got, want, atol=LOGIT_ATOL[quant], rtol=0)


def test_transformers_tokenizer_of_the_rebuilt_folder_matches_edgegen(tiny_gguf, tmp_path):
    path = tiny_gguf("llama", "f32", "bpe")
    hf_dir = gguf_to_hf(path, tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    native = edgegen.load(path, threads=2)
    text = TEXT + " 12345 <|im_start|>user"
    assert tok(text)["input_ids"] == native.tokenizer.encode(text, parse_special=True)


def test_spm_tokenizer_is_refused_with_the_file_named(tiny_gguf, tmp_path):
    path = tiny_gguf("llama", "f32", "spm")
    with pytest.raises(UnsupportedModelError, match=path.name):
        gguf_to_hf(path, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_onnx_export_from_gguf_greedy_equals_native(tiny_gguf, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[onnx]')")
    pytest.importorskip("optimum.exporters.onnx", reason="optimum-onnx is not installed (pip install '.[export-onnx]')")
    path = tiny_gguf("llama", "f16", "bpe")
    out = tmp_path / "onnx"
    assert main(["convert", str(path), str(out), "--to", "onnx", "--quant", "fp32", "--quiet"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # temporary HF folder removed
    manifest = json.loads((out / "edgegen-onnx.json").read_text())
    assert manifest["source"] == str(path.resolve())
    onnx = edgegen.load(out, backend="onnxruntime", threads=2)
    native = edgegen.load(path, threads=2)
    got = [t.id for t in onnx.generate(TEXT, max_tokens=N_GREEDY, ignore_eos=True)]
    want = [t.id for t in native.generate(TEXT, max_tokens=N_GREEDY, ignore_eos=True)]
    assert got == want
