"""ONNX export (converters/onnx_export.py) and the onnxruntime backend, on tiny random models.

References: transformers (logits, greedy tokens) and the native backend (greedy tokens) for fp32;
the fp32 export for the quantized ones (fp16, int8, int4), at the tolerances below.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[onnx]')")
pytest.importorskip("optimum.exporters.onnx", reason="optimum-onnx is not installed (pip install '.[export-onnx]')")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import edgegen  # noqa: E402
from edgegen.backends.onnxruntime import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE  # noqa: E402
from edgegen.cli import main  # noqa: E402
from edgegen.converters import onnx_export  # noqa: E402
from edgegen.errors import ConversionError, ModelFileError  # noqa: E402

ARCHS = ("llama", "qwen2")
PROMPT = "Once upon a time there was a little girl who"
N_GREEDY = 16
FP32_ATOL = 1e-4                      # ORT fp32 vs PyTorch fp32 logits (measured ~1e-6)
# quant -> (max |logit - fp32 logit|, floor on top-1 agreement with fp32) over LONG_TEXT (79 tokens).
# Measured (llama, qwen2): fp16 0.004, 1.00; int8 0.12-0.13, 0.96-0.97; int4 0.62-0.66, 0.61-0.76.
QUANT_TOLERANCE = {"fp16": (0.02, 0.95), "int8": (0.4, 0.85), "int4": (1.2, 0.50)}
LONG_TEXT = ("Once upon a time there was a little girl who lived in a village near the forest. "
             "Whenever she went out, she wore a red riding cloak, so everyone called her Little Red.")


@pytest.fixture(scope="module")
def onnx_dir(tiny_hf, tmp_path_factory):
    """Export (once) tiny_hf(arch) with ``quant``: onnx_dir(arch, quant) -> folder."""
    made = {}

    def get(arch: str, quant: str):
        if (arch, quant) not in made:
            out = tmp_path_factory.mktemp("onnx") / f"{arch}-{quant}"
            onnx_export.export_onnx(tiny_hf(arch, "bpe"), out, quant=quant, progress=False)
            made[arch, quant] = out
        return made[arch, quant]
    return get


@pytest.fixture(scope="module")
def hf_model(tiny_hf):
    made = {}

    def get(arch: str):
        if arch not in made:
            made[arch] = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf(arch, "bpe")).eval()
        return made[arch]
    return get


def _load(folder):
    return edgegen.load(folder, backend="onnxruntime", threads=2)


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_logits_match_transformers(arch, onnx_dir, hf_model):
    model = _load(onnx_dir(arch, "fp32"))
    ids = model.tokenizer.encode(LONG_TEXT)
    with torch.no_grad():
        ref = hf_model(arch)(torch.tensor([ids])).logits[0].numpy()
    ours = model.logits(ids)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_greedy_matches_native_and_transformers(arch, onnx_dir, hf_model, tiny_gguf):
    model = _load(onnx_dir(arch, "fp32"))
    ids = model.tokenizer.encode(PROMPT)
    ours = [t.id for t in model.generate(ids, max_tokens=N_GREEDY, ignore_eos=True)]
    native = edgegen.load(tiny_gguf(arch, "f32"), threads=2)
    theirs_native = [t.id for t in native.generate(ids, max_tokens=N_GREEDY, ignore_eos=True)]
    with torch.no_grad():
        out = hf_model(arch).generate(torch.tensor([ids]), max_new_tokens=N_GREEDY, min_new_tokens=N_GREEDY,
                                      do_sample=False, pad_token_id=0)
    assert ours == theirs_native == out[0, len(ids):].tolist()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("quant", tuple(QUANT_TOLERANCE))
def test_quantized_logits_close_to_fp32(arch, quant, onnx_dir):
    ref_model = _load(onnx_dir(arch, "fp32"))
    ids = ref_model.tokenizer.encode(LONG_TEXT)
    ref = ref_model.logits(ids)
    q = _load(onnx_dir(arch, quant)).logits(ids)
    max_err = float(np.abs(q - ref).max())
    agree = float((q.argmax(-1) == ref.argmax(-1)).mean())
    print(f"{arch} {quant}: max |logit error| {max_err:.4f}, top-1 agreement {agree:.3f} over {len(ids)} positions")
    atol, floor = QUANT_TOLERANCE[quant]
    assert max_err <= atol
    assert agree >= floor


def test_manifest_and_tokenizer_file(onnx_dir, tiny_hf, tiny_gguf):
    from edgegen.gguf_meta import read_metadata
    from edgegen.tokenizer import Tokenizer
    folder = onnx_dir("qwen2", "int4")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["format"] == "edgegen-onnx" and manifest["version"] == 1
    assert manifest["architecture"] == "qwen2" and manifest["model_file"] == MODEL_FILE
    assert manifest["quantization"]["type"] == "int4" and manifest["quantization"]["block_size"] == 32
    assert manifest["quantization"]["onnxruntime_version"]
    assert manifest["created_with"] == f"edgegen {edgegen.__version__}"
    # the tokenizer and chat template are those of the GGUF conversion of the same folder
    meta, gguf_meta = read_metadata(folder / TOKENIZER_FILE), read_metadata(tiny_gguf("qwen2", "f32"))
    assert {k: v for k, v in meta.items() if k.startswith("tokenizer.")} == \
        {k: v for k, v in gguf_meta.items() if k.startswith("tokenizer.")}
    assert meta["tokenizer.chat_template"]
    tok = Tokenizer.from_gguf(folder / TOKENIZER_FILE)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tiny_hf("qwen2", "bpe"))
    assert tok.encode(LONG_TEXT) == hf_tok(LONG_TEXT)["input_ids"]


def test_prefill_then_decode_and_truncate_equal_full_forward(onnx_dir):
    model = _load(onnx_dir("llama", "fp32"))
    ids = model.tokenizer.encode(LONG_TEXT)
    full = model.logits(ids)
    s = model.new_session()
    first = s.eval(ids[:10], all_logits=True)
    steps = [s.eval([i]) for i in ids[10:14]]
    np.testing.assert_allclose(np.vstack([first, *steps]), full[:14], atol=1e-5, rtol=0)
    s.truncate(6)
    assert s.tokens == ids[:6]
    np.testing.assert_allclose(s.eval(ids[6:], all_logits=True), full[6:], atol=1e-5, rtol=0)


def test_prompt_cache_reuse_gives_same_tokens(onnx_dir):
    folder = onnx_dir("qwen2", "fp32")
    model = _load(folder)
    first = model.generate(PROMPT, max_tokens=4, ignore_eos=True)
    list(first)
    second = model.generate(PROMPT + " loved the forest", max_tokens=8, ignore_eos=True)
    reused = [t.id for t in second]
    assert second.timing.reused_tokens > 0
    fresh = [t.id for t in _load(folder).generate(PROMPT + " loved the forest", max_tokens=8, ignore_eos=True)]
    assert reused == fresh


@pytest.mark.parametrize("damage, named", [
    ("no_manifest", MANIFEST_FILE), ("no_model", MODEL_FILE), ("truncated_model", MODEL_FILE),
    ("garbage_model", MODEL_FILE), ("no_tokenizer", TOKENIZER_FILE),
])
def test_damaged_folder_raises_model_file_error(damage, named, onnx_dir, tmp_path):
    folder = shutil.copytree(onnx_dir("llama", "int4"), tmp_path / "model")
    if damage.startswith("no_"):
        (folder / named).unlink()
    elif damage == "truncated_model":
        data = (folder / named).read_bytes()
        (folder / named).write_bytes(data[:len(data) // 2])
    else:
        (folder / named).write_bytes(b"\x00not an onnx model" * 100)
    with pytest.raises(ModelFileError, match=named.replace(".", r"\.")):
        _load(folder)


def test_cli_convert_to_onnx_int4(tiny_hf, tmp_path, capsys):
    out = tmp_path / "cli-int4"
    assert main(["convert", str(tiny_hf("llama", "bpe")), str(out), "--to", "onnx", "--quant", "int4",
                 "--block-size", "16", "--quiet"]) == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["quantization"]["type"] == "int4" and manifest["quantization"]["block_size"] == 16
    assert len(list(_load(out).generate(PROMPT, max_tokens=3, ignore_eos=True))) == 3
    assert main(["convert", str(tiny_hf("llama", "bpe")), str(tmp_path / "x"), "--to", "onnx", "--quant", "q4_0"]) == 1
    assert "--quant" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_failed_export_leaves_no_output(tiny_hf, tmp_path, monkeypatch):
    def fail(*args):
        raise ConversionError("quantizer failed on purpose")
    monkeypatch.setattr(onnx_export, "_quantize", fail)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="on purpose"):
        onnx_export.export_onnx(tiny_hf("llama", "bpe"), out, quant="int8", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_names_the_file(tiny_hf, tmp_path):
    hf = shutil.copytree(tiny_hf("llama", "bpe"), tmp_path / "hf")
    (hf / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match=r"tokenizer\.json"):
        onnx_export.export_onnx(hf, tmp_path / "out", progress=False)
    with pytest.raises(ConversionError, match="block_size"):
        onnx_export.export_onnx(tiny_hf("llama", "bpe"), tmp_path / "out", quant="int4", block_size=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_cli_info_describes_an_export(onnx_dir, capsys):
    from edgegen.cli import main
    assert main(["info", str(onnx_dir("llama", "int4"))]) == 0
    out = capsys.readouterr().out
    assert "ONNX for onnxruntime" in out and "quantization  int4, block 32" in out
    assert "model.onnx" in out and "tokenizer     gpt2" in out
