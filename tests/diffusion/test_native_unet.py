"""The native UNets (edgegen.diffusion.unet) against diffusers' UNet2DModel / UNet2DConditionModel.

Tiny models built here with a fixed seed; every parameter (norms included, which diffusers
initializes to 1 and 0) is perturbed so a swapped gamma/beta or a missed bias shows up.
f32 weights: |native - torch| <= 1e-4 + 1e-4 |torch| with both Ops impls; f16 weights: <= 5e-3 + 5e-3 |torch|
(the matrices rounded to float16; measured ~8e-4 on outputs of size ~1, while t -> t + 1 moves them ~3e-2).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen.diffusion.ops import Ops  # noqa: E402
from edgegen.diffusion.unet import NativeUNet, UNetConfig  # noqa: E402
from edgegen.errors import ModelFileError, UnsupportedModelError  # noqa: E402

F32_TOL = 1e-4
F16_TOL = 5e-3
T = 537.0

PIXEL = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=2,
             norm_num_groups=8, attention_head_dim=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "UpBlock2D"))
# class-conditional, with the non-default options the native code must honour
PIXEL_CLASSES = dict(PIXEL, layers_per_block=1, num_class_embeds=10, flip_sin_to_cos=False, freq_shift=1,
                     mid_block_scale_factor=1.5, center_input_sample=True, attention_head_dim=16)
SD = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
          norm_num_groups=8, cross_attention_dim=24, attention_head_dim=4,
          down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
SD2 = dict(SD, layers_per_block=1, use_linear_projection=True, attention_head_dim=(2, 4), upcast_attention=True,
           transformer_layers_per_block=2)


def _build(cls_name: str, kwargs: dict, seed: int = 0):
    """A diffusers UNet with every parameter perturbed; returns (model, config dict, numpy tensors)."""
    torch.manual_seed(seed)
    model = getattr(diffusers, cls_name)(**kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.1 if p.ndim == 1 else 0.02))
    config = {**dict(model.config), "_class_name": cls_name}
    tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return model, config, tensors


def _inputs(model, conditional: bool, seed: int = 1):
    rng = np.random.default_rng(seed)
    c = model.config
    x = rng.standard_normal((2, c.in_channels, c.sample_size, c.sample_size)).astype(np.float32)
    if conditional:
        cond = rng.standard_normal((2, 5, c.cross_attention_dim)).astype(np.float32)
    elif c.num_class_embeds:
        cond = np.array([3, 7], np.int64)
    else:
        cond = None
    return x, cond


def _torch_out(model, x, cond, conditional: bool) -> np.ndarray:
    t = torch.tensor(T, dtype=torch.float32)
    with torch.no_grad():
        if conditional:
            out = model(torch.from_numpy(x), t, encoder_hidden_states=torch.from_numpy(cond)).sample
        else:
            labels = None if cond is None else torch.from_numpy(cond)
            out = model(torch.from_numpy(x), t, class_labels=labels).sample
    return out.numpy()


CASES = {"pixel": ("UNet2DModel", PIXEL), "pixel-classes": ("UNet2DModel", PIXEL_CLASSES),
         "sd": ("UNet2DConditionModel", SD), "sd2": ("UNet2DConditionModel", SD2)}
_DONE: dict[str, tuple] = {}


def _case(name: str):
    """(config dict, tensors, x, cond, torch output) of a case, built once per test session."""
    if name not in _DONE:
        cls_name, kwargs = CASES[name]
        conditional = cls_name == "UNet2DConditionModel"
        model, config, tensors = _build(cls_name, kwargs)
        x, cond = _inputs(model, conditional)
        _DONE[name] = (config, tensors, x, cond, _torch_out(model, x, cond, conditional))
    return _DONE[name]


def _check(name: str, impl: str, dtype: str, tol: float) -> None:
    config, tensors, x, cond, want = _case(name)
    unet = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), tensors, Ops(impl), dtype=dtype)
    got = unet(x, T, cond)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", ["ref", "cpp"])
@pytest.mark.parametrize("name", list(CASES))
def test_f32_matches_diffusers(name, impl):
    _check(name, impl, "f32", F32_TOL)


def test_text_projections_are_reused_only_for_the_same_text():
    """attn2 projects the text once while the same array comes back (every denoising step), and
    again when the array changes, even in place."""
    config, tensors, x, cond, want = _case("sd")
    unet = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), tensors, Ops("cpp"))
    text = cond.copy()
    first, again = unet(x, T, text), unet(x, T, text)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, want, rtol=F32_TOL, atol=F32_TOL)
    text *= 0.5                                             # same array, new content
    changed = unet(x, T, text)
    fresh = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), tensors, Ops("cpp"))(x, T, text)
    np.testing.assert_array_equal(changed, fresh)
    assert np.abs(changed - first).max() > 1e-3


@pytest.mark.parametrize("name", ["pixel-classes", "sd2"])
def test_f16_weights_within_bound(name):
    _check(name, "cpp", "f16", F16_TOL)


def test_protocol_attributes():
    config, tensors = _case("sd2")[:2]
    unet = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), tensors, Ops("ref"))
    assert (unet.in_channels, unet.out_channels, unet.sample_size) == (4, 4, 8)
    assert (unet.cross_attention_dim, unet.num_class_embeds) == (24, None)
    cfg = UNetConfig.from_hf_config(_case("pixel-classes")[0])
    assert (cfg.conditional, cfg.num_class_embeds, cfg.cross_attention_dim) == (False, 10, None)


def test_missing_or_misshaped_tensor_is_named():
    config, tensors = _case("sd2")[:2]
    cfg = UNetConfig.from_hf_config(config, "tiny/unet/config.json")
    name = "up_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight"
    missing = {k: v for k, v in tensors.items() if k != name}
    with pytest.raises(ModelFileError, match=rf"{name}.*missing.*\(32, 24\)"):
        NativeUNet.from_tensors(cfg, missing, Ops("ref"))
    bad = dict(tensors, **{name: tensors[name][:, :20]})
    with pytest.raises(ModelFileError, match=rf"{name}.*expected shape \(32, 24\), found \(32, 20\)"):
        NativeUNet.from_tensors(cfg, bad, Ops("ref"))


@pytest.mark.parametrize("field,value", [("class_embed_type", "timestep"), ("addition_embed_type", "text_time"),
                                         ("only_cross_attention", [False, True]), ("dual_cross_attention", True),
                                         ("resnet_time_scale_shift", "scale_shift"), ("act_fn", "gelu"),
                                         ("transformer_layers_per_block", [1, 2]),
                                         ("down_block_types", ["SimpleCrossAttnDownBlock2D", "DownBlock2D"])])
def test_unsupported_config_field_is_named(field, value):
    config = {"_class_name": "UNet2DConditionModel", **SD, field: value}
    with pytest.raises(UnsupportedModelError, match=field):
        UNetConfig.from_hf_config(config, "tiny/unet/config.json")


def test_wrong_conditioning_is_a_usage_error():
    from edgegen.errors import UsageError
    config, tensors, x = _case("pixel-classes")[:3]
    unet = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), tensors, Ops("ref"))
    with pytest.raises(UsageError, match="class labels"):
        unet(x, T, np.array([3, 10]))
    with pytest.raises(UsageError, match="multiples of 2"):
        unet(x[:, :, :7, :7], T, np.array([3, 1]))


def test_deprecated_attention_names_load():
    """Pre-0.14 files call the attention block's projections query/key/value/proj_attn."""
    config, tensors, x, cond, want = _case("pixel")
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old = {}
    for k, v in tensors.items():
        for new, dep in renames.items():
            k = k.replace(f".{new}.", f".{dep}.") if ".attentions." in k else k
        old[k] = v
    assert "mid_block.attentions.0.proj_attn.weight" in old
    got = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), old, Ops("ref"))(x, T, cond)
    np.testing.assert_allclose(got, want, rtol=F32_TOL, atol=F32_TOL)


@pytest.mark.parametrize("padding,use_conv", [(0, True), (1, True), (1, False)])
def test_vae_style_resample_blocks(padding, use_conv):
    """What the VAE reuses: Downsample2D with padding 0 (pads right/bottom) or avg pool, Upsample2D,
    and a ResnetBlock2D without a time embedding."""
    from diffusers.models.downsampling import Downsample2D as TDown
    from diffusers.models.resnet import ResnetBlock2D as TRes
    from diffusers.models.upsampling import Upsample2D as TUp

    from edgegen.diffusion.unet_blocks import Downsample2D, Params, ResnetBlock2D, Upsample2D
    torch.manual_seed(0)
    mods = {"down": TDown(8, use_conv=use_conv, out_channels=8, padding=padding, name="op"),
            "up": TUp(8, use_conv=use_conv, out_channels=8),
            "res": TRes(in_channels=8, out_channels=16, temb_channels=None, groups=4, eps=1e-6)}
    tensors = {f"{m}.{k}": v.detach().numpy() + 0.1 for m, mod in mods.items() for k, v in mod.state_dict().items()}
    with torch.no_grad():
        for mod in mods.values():
            for prm in mod.parameters():
                prm.add_(0.1)
    p, ops = Params(tensors), Ops("ref")
    ours = {"down": Downsample2D.load(p, "down", 8, 8, padding, use_conv),
            "up": Upsample2D.load(p, "up", 8, 8, use_conv),
            "res": ResnetBlock2D.load(p, "res", 8, 16, None, 4, 1e-6)}
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 6)).astype(np.float32)
    for name, mod in mods.items():
        with torch.no_grad():
            want = (mod(torch.from_numpy(x)) if name != "res" else mod(torch.from_numpy(x), None)).numpy()
        got = ours[name](ops, np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, want, rtol=F32_TOL, atol=F32_TOL, err_msg=name)
