"""The native VAE (vae.py) and CLIP text encoder (clip.py) against diffusers / transformers on tiny
random models; the safetensors reader (weights.py); the folder loader (native.py).

Tolerances: float32 weights agree with PyTorch to atol 1e-4 (outputs are of order 1 to 4);
float16 weights agree to atol 1e-4 with PyTorch run on the same weights rounded to float16, and
to atol 1e-2 with the float32 original (the rounding itself).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from edgegen.diffusion.clip import ClipTextConfig, NativeClipTextEncoder
from edgegen.diffusion.ops import Ops
from edgegen.diffusion.vae import NativeVaeDecoder, NativeVaeEncoder, VaeConfig
from edgegen.diffusion.weights import find_weights, read_tensors
from edgegen.errors import ModelFileError, UnsupportedModelError

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
ATOL_F16_ROUNDING = 1e-2
IMPLS = ("ref", "cpp")


def _perturb(model, scale: float = 0.1):
    """Move every parameter off its init (norms start at 1/0 and would hide bugs)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def _state(model, half: bool = False) -> dict[str, np.ndarray]:
    return {k: (v.half() if half else v).numpy() for k, v in model.state_dict().items()}


def _rounded_f16(model):
    r = copy.deepcopy(model)
    with torch.no_grad():
        for p in r.parameters():
            p.copy_(p.half().float())
    return r


def _tiny_vae(chans, layers, attention=True, seed=0):
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(block_out_channels=chans, layers_per_block=layers, norm_num_groups=8,
                                  latent_channels=4, down_block_types=("DownEncoderBlock2D",) * len(chans),
                                  up_block_types=("UpDecoderBlock2D",) * len(chans),
                                  mid_block_add_attention=attention).eval()
    return _perturb(vae)


def _vae_config(vae) -> VaeConfig:
    return VaeConfig.from_hf_config(dict(vae.config), Path("vae/config.json"))


@pytest.fixture(scope="module")
def vae3():
    return _tiny_vae((16, 32, 32), 2)


# ---- VAE -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("chans,layers,attention", [((16, 32, 32), 2, True), ((16, 32), 1, False)])
def test_vae_matches_diffusers(impl, chans, layers, attention):
    vae = _tiny_vae(chans, layers, attention)
    cfg, tensors, ops = _vae_config(vae), _state(vae), Ops(impl, 2)
    z, x = torch.randn(2, 4, 5, 3), torch.randn(2, 3, 4 * cfg.scale_factor, 3 * cfg.scale_factor)
    with torch.no_grad():
        want_img = vae.decode(z).sample.numpy()                        # post_quant_conv + decoder
        want_mom = vae.encode(x).latent_dist.parameters.numpy()        # encoder + quant_conv
    dec, enc = NativeVaeDecoder.from_tensors(cfg, tensors, ops), NativeVaeEncoder.from_tensors(cfg, tensors, ops)
    assert (dec.latent_channels, dec.scale_factor) == (4, 2 ** (len(chans) - 1))
    got_img, got_mom = dec(z.numpy()), enc(x.numpy())
    assert got_img.shape == want_img.shape == (2, 3, 5 * dec.scale_factor, 3 * dec.scale_factor)
    assert got_mom.shape == want_mom.shape == (2, 8, 4, 3)
    np.testing.assert_allclose(got_img, want_img, atol=ATOL, rtol=0)
    np.testing.assert_allclose(got_mom, want_mom, atol=ATOL, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_vae_f16_weights(vae3, impl):
    cfg, ops = _vae_config(vae3), Ops(impl, 2)
    rounded = _rounded_f16(vae3)
    z, x = torch.randn(1, 4, 4, 4), torch.randn(1, 3, 16, 16)
    dec = NativeVaeDecoder.from_tensors(cfg, _state(vae3, half=True), ops, "f16")
    enc = NativeVaeEncoder.from_tensors(cfg, _state(vae3, half=True), ops, "f16")
    assert dec.conv_in.weight.w.dtype == np.float16
    with torch.no_grad():
        np.testing.assert_allclose(dec(z.numpy()), rounded.decode(z).sample.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(enc(x.numpy()), rounded.encode(x).latent_dist.parameters.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(dec(z.numpy()), vae3.decode(z).sample.numpy(), atol=ATOL_F16_ROUNDING, rtol=0)


def test_vae_missing_and_misshaped_tensors(vae3):
    cfg, tensors = _vae_config(vae3), _state(vae3)
    name = "decoder.up_blocks.1.resnets.2.conv1.weight"
    with pytest.raises(ModelFileError, match=rf"{name}.*missing.*\(32, 32, 3, 3\)"):
        NativeVaeDecoder.from_tensors(cfg, {k: v for k, v in tensors.items() if k != name}, Ops("ref"))
    bad = dict(tensors, **{"quant_conv.weight": np.zeros((8, 8, 3, 3), np.float32)})
    with pytest.raises(ModelFileError, match=r"quant_conv.weight.*\(8, 8, 1, 1\).*\(8, 8, 3, 3\)"):
        NativeVaeEncoder.from_tensors(cfg, bad, Ops("ref"))


@pytest.mark.parametrize("field,value", [("up_block_types", ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"]),
                                         ("down_block_types", ["DownEncoderBlock2D"]),
                                         ("act_fn", "gelu"), ("norm_num_groups", 5)])
def test_vae_config_rejects(field, value):
    d = {"block_out_channels": [16, 32], "down_block_types": ["DownEncoderBlock2D"] * 2,
         "up_block_types": ["UpDecoderBlock2D"] * 2, "norm_num_groups": 8, field: value}
    with pytest.raises(UnsupportedModelError, match=rf"vae/config.json.*{field}"):
        VaeConfig.from_hf_config(d, Path("vae/config.json"))


# ---- CLIP ------------------------------------------------------------------------------------------

def _tiny_clip(act: str):
    torch.manual_seed(1)
    cfg = transformers.CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=77, hidden_act=act)
    return _perturb(transformers.CLIPTextModel(cfg).eval()), cfg


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_clip_matches_transformers(impl, act):
    model, hf_cfg = _tiny_clip(act)
    cfg = ClipTextConfig.from_hf_config(hf_cfg.to_dict(), Path("text_encoder/config.json"))
    enc = NativeClipTextEncoder.from_tensors(cfg, _state(model), Ops(impl, 2))
    assert (enc.hidden_size, enc.max_length) == (32, 77)
    for length in (77, 5):
        ids = torch.randint(0, 1000, (2, length))
        with torch.no_grad():
            want = model(ids).last_hidden_state.numpy()
        got = enc(ids.numpy())
        assert got.shape == (2, length, 32)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_clip_config_rejects_activation():
    with pytest.raises(UnsupportedModelError, match="hidden_act"):
        ClipTextConfig.from_hf_config({"hidden_act": "relu"}, Path("text_encoder/config.json"))


# ---- weights.py ------------------------------------------------------------------------------------

def test_read_tensors_dtypes_and_errors(tmp_path):
    from safetensors.torch import save_file
    t = {"a": torch.randn(3, 4), "h": torch.randn(5).half(), "b": torch.randn(2, 2).bfloat16()}
    path = tmp_path / "model.safetensors"
    save_file(t, str(path))
    got = read_tensors(path)
    assert got["a"].dtype == np.float32 and got["h"].dtype == np.float16 and got["b"].dtype == np.float32
    np.testing.assert_array_equal(got["a"], t["a"].numpy())
    np.testing.assert_array_equal(got["h"], t["h"].numpy())
    np.testing.assert_array_equal(got["b"], t["b"].float().numpy())
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ModelFileError, match="short.safetensors"):
        read_tensors(short)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json......}")
    with pytest.raises(ModelFileError, match="junk.safetensors"):
        read_tensors(junk)


def test_find_weights(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="pytorch_model.bin.*safe_serialization"):
        find_weights(tmp_path / "bin")
    (tmp_path / "f16").mkdir()
    (tmp_path / "f16" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"x")
    assert find_weights(tmp_path / "f16").name == "diffusion_pytorch_model.fp16.safetensors"
    with pytest.raises(ModelFileError, match="nowhere"):
        find_weights(tmp_path / "nowhere")


# ---- native.py -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A Stable Diffusion-like folder: model_index.json + text_encoder/, unet/, vae/ (no tokenizer)."""
    root = tmp_path_factory.mktemp("native-sd")
    torch.manual_seed(2)
    text, _ = _tiny_clip("quick_gelu")
    unet = _perturb(diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval(), 0.02)
    vae = _tiny_vae((16, 32), 1)
    for name, model in (("text_encoder", text), ("unet", unet), ("vae", vae)):
        model.save_pretrained(str(root / name), safe_serialization=True)
    index = {"_class_name": "StableDiffusionPipeline", "text_encoder": ["transformers", "CLIPTextModel"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (root / "model_index.json").write_text(json.dumps(index))
    return root, text, unet, vae


def test_load_native_components(sd_folder):
    from edgegen.diffusion.native import load_native_components
    root, text, unet, vae = sd_folder
    comps = load_native_components(root, threads=2)
    assert set(comps) == {"text_encoder", "unet", "vae_decoder", "vae_encoder"}
    assert comps["text_encoder"].hidden_size == 32 and comps["unet"].cross_attention_dim == 32
    assert (comps["vae_decoder"].latent_channels, comps["vae_encoder"].scale_factor) == (4, 2)
    ids = torch.randint(0, 1000, (1, 77))
    x, z, img = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        states = text(ids).last_hidden_state
        want = {"text": states.numpy(), "unet": unet(x, 10, states).sample.numpy(),
                "dec": vae.decode(z).sample.numpy(), "enc": vae.encode(img).latent_dist.parameters.numpy()}
    got_states = comps["text_encoder"](ids.numpy())
    np.testing.assert_allclose(got_states, want["text"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(comps["unet"](x.numpy(), 10, states.numpy()), want["unet"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(comps["vae_decoder"](z.numpy()), want["dec"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(comps["vae_encoder"](img.numpy()), want["enc"], atol=ATOL, rtol=0)


def test_load_native_f16_and_errors(sd_folder, tmp_path):
    from edgegen.diffusion.native import load_native_components
    _, _, _, vae = sd_folder
    copy.deepcopy(vae).half().save_pretrained(str(tmp_path / "vae"), safe_serialization=True, variant="fp16")
    (tmp_path / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKL"]}))
    comps = load_native_components(tmp_path, threads=1)
    assert set(comps) == {"vae_decoder", "vae_encoder"}
    assert comps["vae_decoder"].conv_in.weight.w.dtype == np.float16              # as stored
    assert load_native_components(tmp_path, threads=1, dtype="f32")["vae_decoder"].conv_in.weight.w.dtype == np.float32
    (tmp_path / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderTiny"]}))
    with pytest.raises(UnsupportedModelError, match="vae.*AutoencoderTiny"):
        load_native_components(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DModel"]}))
    with pytest.raises(ModelFileError, match="unet"):
        load_native_components(tmp_path)
