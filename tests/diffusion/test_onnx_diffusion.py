"""diffusers -> ONNX export (converters/diffusers_onnx.py) and the onnxruntime runners
(edgegen/diffusion/onnx_components.py) against the PyTorch modules of tiny random models.

Tolerances: fp32 graphs agree with PyTorch to atol 1e-4 (float32 reassociation only). int8
(dynamic QUInt8 MatMul/Gemm weights and per-tensor activations) stays within 8% relative L2 error
of the PyTorch output on these random inputs (measured on an AVX2 CPU without VNNI: text encoder
3.6%, UNet 0.5%); the VAE is not quantized, so it keeps the fp32 bound. fp16 weights (pixel
UNet) stay within 1% relative L2 error.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from diffusion.tiny_sd import EOS_ID, make_tiny_pixel_unet, make_tiny_sd
from edgegen.errors import ConversionError, MissingDependencyError, ModelFileError, UsageError

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

from edgegen.converters import diffusers_onnx  # noqa: E402
from edgegen.converters.diffusers_onnx import export_diffusers_onnx  # noqa: E402
from edgegen.diffusion.onnx_components import (is_onnx_diffusion_folder, load_onnx_components,  # noqa: E402
                                               read_diffusion_manifest)

FP32_ATOL = 1e-4
INT8_REL_L2 = 0.08
FP16_REL_L2 = 0.01


def rel_l2(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def check_close(ours: np.ndarray, ref: np.ndarray, quant: str) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    if quant == "fp32":
        np.testing.assert_allclose(ours, ref, atol=FP32_ATOL, rtol=0)
    else:
        assert rel_l2(ours, ref) < INT8_REL_L2
        assert rel_l2(ours, ref) > 0   # the weights really were quantized


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """PyTorch's two OpenMP threads spin for seconds per call on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", seed=0)


@pytest.fixture(scope="module")
def torch_sd(sd_dir):
    return {"text_encoder": transformers.CLIPTextModel.from_pretrained(sd_dir / "text_encoder").eval(),
            "unet": diffusers.UNet2DConditionModel.from_pretrained(sd_dir / "unet").eval(),
            "vae": diffusers.AutoencoderKL.from_pretrained(sd_dir / "vae").eval()}


@pytest.fixture(scope="module", params=["fp32", "int8"])
def exported(request, sd_dir, tmp_path_factory):
    """(quant, folder, runners): the tiny SD exported once per quant."""
    out = tmp_path_factory.mktemp(f"onnx-{request.param}") / "sd-onnx"
    report = export_diffusers_onnx(sd_dir, out, quant=request.param, progress=False)
    assert report.output == out and set(report.components) == {"text_encoder", "unet", "vae_decoder", "vae_encoder"}
    return request.param, out, load_onnx_components(out, threads=1)


def test_folder_is_self_describing(exported, sd_dir):
    quant, out, _ = exported
    assert is_onnx_diffusion_folder(out) and not is_onnx_diffusion_folder(sd_dir)
    manifest = read_diffusion_manifest(out)
    assert manifest["layout"] == "stable-diffusion" and manifest["quantization"]["type"] == quant
    assert manifest["components"]["unet"]["inputs"] == ["sample", "timestep", "encoder_hidden_states"]
    assert manifest["components"]["unet"]["quant"] == quant and manifest["components"]["vae_decoder"]["quant"] == "fp32"
    for name, source in [("text_encoder", "text_encoder"), ("unet", "unet"), ("vae_decoder", "vae"),
                         ("vae_encoder", "vae")]:
        assert (out / name / "model.onnx").is_file()
        assert json.loads((out / name / "config.json").read_text()) == json.loads(
            (sd_dir / source / "config.json").read_text())
    for rel in ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"]:
        assert (out / rel).read_bytes() == (sd_dir / rel).read_bytes()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no temporary folder left


def test_runner_attributes_come_from_the_configs(exported):
    _, _, parts = exported
    te, unet, dec, enc = parts["text_encoder"], parts["unet"], parts["vae_decoder"], parts["vae_encoder"]
    assert (te.hidden_size, te.max_length) == (32, 77)
    assert (unet.in_channels, unet.out_channels, unet.sample_size, unet.cross_attention_dim,
            unet.num_class_embeds) == (4, 4, 8, 32, None)
    assert (dec.latent_channels, dec.scale_factor, enc.latent_channels, enc.scale_factor) == (4, 2, 4, 2)


def test_text_encoder_matches_torch(exported, torch_sd):
    quant, _, parts = exported
    ids = np.random.default_rng(1).integers(0, EOS_ID + 1, size=(2, 77), dtype=np.int64)
    with torch.no_grad():
        ref = torch_sd["text_encoder"](torch.from_numpy(ids)).last_hidden_state.numpy()
    check_close(parts["text_encoder"](ids), ref, quant)
    short = ids[:1, :5]   # dynamic sequence length
    with torch.no_grad():
        ref_short = torch_sd["text_encoder"](torch.from_numpy(short)).last_hidden_state.numpy()
    check_close(parts["text_encoder"](short), ref_short, quant)


def _torch_unet(unet, x, t, states):
    with torch.no_grad():
        return unet(torch.from_numpy(x), t, encoder_hidden_states=torch.from_numpy(states)).sample.numpy()


@pytest.mark.parametrize("shape,t", [((2, 4, 8, 8), 981), ((1, 4, 16, 12), 1)])
def test_unet_matches_torch(exported, torch_sd, shape, t):
    quant, _, parts = exported
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape, dtype=np.float32)
    states = rng.standard_normal((shape[0], 77, 32), dtype=np.float32)
    check_close(parts["unet"](x, t, states), _torch_unet(torch_sd["unet"], x, t, states), quant)


def test_unet_timestep_forms(exported, torch_sd):
    """The timestep is a float32 scalar: an int, a NumPy scalar, a 0-d or 1-element array all work;
    a fractional timestep (Euler-style schedulers) reaches the graph unrounded."""
    quant, _, parts = exported
    unet = parts["unet"]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 8, 8), dtype=np.float32)
    states = rng.standard_normal((2, 77, 32), dtype=np.float32)
    base = unet(x, 500, states)
    for t in (np.int64(500), np.float32(500.0), np.array(500), np.array([500.0]), torch.tensor(500)):
        np.testing.assert_array_equal(unet(x, t, states), base)
    assert np.abs(unet(x, 10, states) - base).max() > 1e-3   # the timestep matters
    frac = 437.25
    ref = _torch_unet(torch_sd["unet"], x, torch.tensor(frac), states)
    check_close(unet(x, frac, states), ref, quant)
    with pytest.raises(UsageError, match="one timestep"):
        unet(x, np.array([1, 2]), states)
    with pytest.raises(UsageError, match="encoder_hidden_states"):
        unet(x, 500, None)


def test_vae_matches_torch(exported, torch_sd):
    _, _, parts = exported
    rng = np.random.default_rng(4)
    z = rng.standard_normal((2, 4, 8, 6), dtype=np.float32)
    image = rng.uniform(-1, 1, (1, 3, 16, 12)).astype(np.float32)
    vae = torch_sd["vae"]
    with torch.no_grad():
        ref_dec = vae.decode(torch.from_numpy(z)).sample.numpy()
        ref_enc = vae.encode(torch.from_numpy(image)).latent_dist.parameters.numpy()   # mean ++ logvar
    check_close(parts["vae_decoder"](z), ref_dec, "fp32")                 # the VAE is never quantized
    assert parts["vae_decoder"](z).shape == (2, 3, 16, 12)
    check_close(parts["vae_encoder"](image), ref_enc, "fp32")
    assert parts["vae_encoder"](image).shape == (1, 8, 8, 6)


@pytest.mark.parametrize("conditional", [True, False])
def test_pixel_unet_matches_torch(tmp_path, conditional):
    src = make_tiny_pixel_unet(tmp_path / "ddpm", class_conditional=conditional, seed=1)
    out = tmp_path / "ddpm-onnx"
    report = export_diffusers_onnx(src, out, quant="fp32", progress=False)
    assert report.layout == "pixel-unet" and list(report.components) == ["unet"]
    parts = load_onnx_components(out, threads=1)
    unet = parts["unet"]
    assert list(parts) == ["unet"] and (unet.cross_attention_dim, unet.num_class_embeds) == (
        None, 10 if conditional else None)
    torch_unet = diffusers.UNet2DModel.from_pretrained(src / "unet").eval()
    x = np.random.default_rng(5).standard_normal((3, 3, 8, 8), dtype=np.float32)
    labels = np.array([0, 7, 3], np.int64) if conditional else None
    for t in (0, 57):
        with torch.no_grad():
            ref = torch_unet(torch.from_numpy(x), t, class_labels=None if labels is None else
                             torch.from_numpy(labels)).sample.numpy()
        check_close(unet(x, t, labels), ref, "fp32")
    if conditional:   # the labels matter, and bad ones are refused
        assert np.abs(unet(x, 57, labels[::-1].copy()) - unet(x, 57, labels)).max() > 1e-4
        with pytest.raises(UsageError, match="class labels"):
            unet(x, 57, np.array([0, 1, 10]))
    else:
        with pytest.raises(UsageError, match="unconditional"):
            unet(x, 57, np.array([0, 1, 2]))


def test_pixel_unet_fp16(tmp_path):
    src = make_tiny_pixel_unet(tmp_path / "ddpm", class_conditional=True, seed=2)
    out = tmp_path / "ddpm-fp16"
    export_diffusers_onnx(src, out, quant="fp16", progress=False)
    assert read_diffusion_manifest(out)["components"]["unet"]["quant"] == "fp16"
    torch_unet = diffusers.UNet2DModel.from_pretrained(src / "unet").eval()
    x = np.random.default_rng(6).standard_normal((2, 3, 8, 8), dtype=np.float32)
    labels = np.array([4, 9], np.int64)
    with torch.no_grad():
        ref = torch_unet(torch.from_numpy(x), 30, class_labels=torch.from_numpy(labels)).sample.numpy()
    ours = load_onnx_components(out, threads=1)["unet"](x, 30, labels)
    assert ours.dtype == np.float32 and 0 < rel_l2(ours, ref) < FP16_REL_L2


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_export_leaves_nothing(tmp_path, monkeypatch, error):
    src = make_tiny_pixel_unet(tmp_path / "ddpm", class_conditional=False)
    out_parent = tmp_path / "out"
    out_parent.mkdir()

    def export_then_fail(src_dir, fp32, progress):   # a model file written, then an error or Ctrl-C
        (fp32 / "unet").mkdir(parents=True)
        (fp32 / "unet" / "model.onnx").write_bytes(b"partial")
        raise error("interrupted")
    monkeypatch.setattr(diffusers_onnx, "_export_pixel", export_then_fail)
    with pytest.raises(error, match="interrupted"):
        export_diffusers_onnx(src, out_parent / "ddpm-onnx", progress=False)
    assert list(out_parent.iterdir()) == []


def _copy_without(src, dst, *ignored):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*ignored))
    return dst


def test_clear_conversion_errors(sd_dir, tmp_path):
    no_unet = _copy_without(sd_dir, tmp_path / "no-unet", "unet")
    with pytest.raises(ConversionError, match=r"no-unet/unet: component folder 'unet' not found"):
        export_diffusers_onnx(no_unet, tmp_path / "a", progress=False)
    no_weights = _copy_without(sd_dir, tmp_path / "no-weights", "diffusion_pytorch_model.safetensors")
    with pytest.raises(ConversionError, match=r"no-weights/(unet|vae): no \*\.safetensors"):
        export_diffusers_onnx(no_weights, tmp_path / "b", progress=False)
    with pytest.raises(ConversionError, match=r"model_index.json: file not found"):
        export_diffusers_onnx(sd_dir / "unet", tmp_path / "c", progress=False)
    with pytest.raises(ConversionError, match="quant: expected one of fp32, fp16, int8"):
        export_diffusers_onnx(sd_dir, tmp_path / "d", quant="int4", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-unet", "no-weights"]


def test_missing_optimum_names_the_fix(sd_dir, tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "optimum.exporters.onnx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgegen\[export-onnx\]'"):
        export_diffusers_onnx(sd_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("exported", ["fp32"], indirect=True)   # the checks do not depend on the quant
def test_loader_errors_name_the_file(exported, tmp_path):
    _, out, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "unet" / "model.onnx").unlink()
    with pytest.raises(ModelFileError, match=r"broken/unet/model.onnx: file not found"):
        load_onnx_components(broken)
    (broken / "unet" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match=r"broken/unet/model.onnx: onnxruntime cannot load it"):
        load_onnx_components(broken)
    shutil.copy2(out / "unet" / "model.onnx", broken / "unet" / "model.onnx")
    (broken / "vae_decoder" / "config.json").unlink()
    with pytest.raises(ModelFileError, match=r"vae_decoder/config.json: file not found"):
        load_onnx_components(broken)
    manifest = json.loads((broken / "edgegen-onnx.json").read_text())
    del manifest["components"]["vae_encoder"]
    (broken / "edgegen-onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"edgegen-onnx.json: field 'components' should name"):
        load_onnx_components(broken)
    (broken / "edgegen-onnx.json").write_text("{")
    with pytest.raises(ModelFileError, match=r"edgegen-onnx.json: not valid JSON"):
        load_onnx_components(broken)
    with pytest.raises(ModelFileError, match=r"edgegen-onnx.json: file not found"):
        load_onnx_components(tmp_path)
