"""AutoencoderKL (diffusers) over edgegen's layer operations: the decoder and the encoder.

    decode: z (B, L, h, w) -> post_quant_conv -> conv_in -> mid (resnet, attention, resnet)
            -> up blocks (layers_per_block + 1 resnets, then nearest x2 + conv but in the last)
            -> group norm + SiLU -> conv_out -> image (B, 3, h * 2^(n-1), w * 2^(n-1))
    encode: image -> conv_in -> down blocks (layers_per_block resnets, then a stride-2 conv padded
            (0, 1, 0, 1) but in the last) -> mid -> group norm + SiLU -> conv_out -> quant_conv
            -> moments (B, 2L, H / 2^(n-1), W / 2^(n-1)): mean and log-variance

Every norm is a GroupNorm(norm_num_groups, eps 1e-6); the mid attention has one head over all
channels. Activations are channels-last inside; NCHW float32 at the boundary (components.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgegen.errors import UnsupportedModelError, UsageError

from .ops import Conv, Ops
from .unet_blocks import AttnBlock, Downsample2D, GroupNorm, Params, ResnetBlock2D, Upsample2D

DOWN_BLOCK = "DownEncoderBlock2D"
UP_BLOCK = "UpDecoderBlock2D"
EPS = 1e-6                      # every VAE norm (resnets, attention, conv_norm_out)
# config field -> diffusers' default
DEFAULTS: dict[str, Any] = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
                            "norm_num_groups": 32, "scaling_factor": 0.18215, "act_fn": "silu",
                            "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True}


def _positive(d: dict, path: Path, key: str) -> int:
    v = d.get(key, DEFAULTS[key])
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise UnsupportedModelError(f"{path}: field {key!r} should be a positive integer, found {v!r}")
    return v


def _flag(d: dict, path: Path, key: str) -> bool:
    v = d.get(key, DEFAULTS[key])
    if not isinstance(v, bool):
        raise UnsupportedModelError(f"{path}: field {key!r} should be true or false, found {v!r}")
    return v


@dataclass(frozen=True)
class VaeConfig:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    latent_channels: int
    norm_num_groups: int
    scaling_factor: float
    shift_factor: float | None = None
    in_channels: int = 3
    out_channels: int = 3
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    source: str = "vae"

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_hf_config(cls, d: dict, path: Path) -> "VaeConfig":
        """From vae/config.json (an AutoencoderKL's)."""
        if d.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
            raise UnsupportedModelError(f"{path}: field '_class_name' is {d['_class_name']!r}; edgegen runs AutoencoderKL")
        chans = d.get("block_out_channels", (64,))
        if not isinstance(chans, (list, tuple)) or not chans or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chans):
            raise UnsupportedModelError(f"{path}: field 'block_out_channels' should be a list of positive integers, "
                                        f"found {chans!r}")
        for key, kind in (("down_block_types", DOWN_BLOCK), ("up_block_types", UP_BLOCK)):
            types = list(d.get(key, (kind,)))
            if types != [kind] * len(chans):
                raise UnsupportedModelError(f"{path}: field {key!r} is {types!r}; edgegen runs {len(chans)} x {kind!r} "
                                            f"(one per block_out_channels)")
        if d.get("act_fn", "silu") != "silu":
            raise UnsupportedModelError(f"{path}: field 'act_fn' is {d['act_fn']!r}; edgegen runs 'silu'")
        groups = _positive(d, path, "norm_num_groups")
        if any(c % groups for c in chans):
            raise UnsupportedModelError(f"{path}: field 'norm_num_groups' ({groups}) does not divide "
                                        f"block_out_channels {list(chans)}")
        shift = d.get("shift_factor")
        return cls(block_out_channels=tuple(chans), layers_per_block=_positive(d, path, "layers_per_block"),
                   latent_channels=_positive(d, path, "latent_channels"), norm_num_groups=groups,
                   scaling_factor=float(d.get("scaling_factor", DEFAULTS["scaling_factor"])),
                   shift_factor=None if shift is None else float(shift),
                   in_channels=_positive(d, path, "in_channels"), out_channels=_positive(d, path, "out_channels"),
                   use_quant_conv=_flag(d, path, "use_quant_conv"),
                   use_post_quant_conv=_flag(d, path, "use_post_quant_conv"),
                   mid_block_add_attention=_flag(d, path, "mid_block_add_attention"),
                   source=str(Path(path).parent))


@dataclass(frozen=True)
class _Mid:
    """UNetMidBlock2D without time embedding: resnet, [attention: one head over all C], resnet."""
    res1: ResnetBlock2D
    attn: AttnBlock | None
    res2: ResnetBlock2D

    @classmethod
    def load(cls, p: Params, prefix: str, ch: int, cfg: VaeConfig) -> "_Mid":
        g = cfg.norm_num_groups
        attn = (AttnBlock.load(p, f"{prefix}.attentions.0", ch, heads=1, dim_head=ch, groups=g, eps=EPS)
                if cfg.mid_block_add_attention else None)
        return cls(ResnetBlock2D.load(p, f"{prefix}.resnets.0", ch, ch, None, g, EPS), attn,
                   ResnetBlock2D.load(p, f"{prefix}.resnets.1", ch, ch, None, g, EPS))

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        x = self.res1(ops, x)
        if self.attn is not None:
            x = self.attn(ops, x)
        return self.res2(ops, x)


@dataclass(frozen=True)
class _Out:
    """conv_norm_out (GroupNorm + SiLU) then conv_out."""
    norm: GroupNorm          # (C,)
    conv: Conv               # (Cout, C, 3, 3)

    @classmethod
    def load(cls, p: Params, prefix: str, ch: int, cout: int, groups: int) -> "_Out":
        return cls(GroupNorm.load(p, f"{prefix}.conv_norm_out", ch, groups, EPS), p.conv(f"{prefix}.conv_out", ch, cout, 3))

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        return ops.conv2d(self.norm(ops, x, silu=True), self.conv)


def _params(config: VaeConfig, tensors: Mapping[str, np.ndarray], dtype: str) -> Params:
    return Params(tensors, dtype, config.source)


def _check_image(x: np.ndarray, channels: int, multiple: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != channels or x.shape[2] % multiple or x.shape[3] % multiple:
        raise UsageError(f"{what}: expected float (B, {channels}, H, W) with H and W multiples of {multiple}, "
                         f"found {x.dtype} {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32)     # NCHW -> NHWC


class NativeVaeDecoder:
    """VaeDecoder (components.py): post_quant_conv + Decoder."""

    def __init__(self, config: VaeConfig, ops: Ops, post_quant: Conv | None, conv_in: Conv, mid: _Mid,
                 ups: list[tuple[list[ResnetBlock2D], Upsample2D | None]], out: _Out):
        self.config, self.ops = config, ops
        self.latent_channels, self.scale_factor = config.latent_channels, config.scale_factor
        self.post_quant, self.conv_in, self.mid, self.ups, self.out = post_quant, conv_in, mid, ups, out

    @classmethod
    def from_tensors(cls, config: VaeConfig, tensors: Mapping[str, np.ndarray], ops: Ops,
                     dtype: str = "f32") -> "NativeVaeDecoder":
        p, lat, g = _params(config, tensors, dtype), config.latent_channels, config.norm_num_groups
        rev = list(reversed(config.block_out_channels))
        post = p.conv("post_quant_conv", lat, lat, 1) if config.use_post_quant_conv else None
        ups, prev = [], rev[0]
        for i, ch in enumerate(rev):
            pre = f"decoder.up_blocks.{i}"
            res = [ResnetBlock2D.load(p, f"{pre}.resnets.{j}", prev if j == 0 else ch, ch, None, g, EPS)
                   for j in range(config.layers_per_block + 1)]
            last = i == len(rev) - 1
            ups.append((res, None if last else Upsample2D.load(p, f"{pre}.upsamplers.0", ch)))
            prev = ch
        return cls(config, ops, post, p.conv("decoder.conv_in", lat, rev[0], 3),
                   _Mid.load(p, "decoder.mid_block", rev[0], config), ups,
                   _Out.load(p, "decoder", rev[-1], config.out_channels, g))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        ops = self.ops
        x = _check_image(z, self.latent_channels, 1, "VAE decoder")       # (B, h, w, L)
        if self.post_quant is not None:
            x = ops.conv2d(x, self.post_quant)
        x = self.mid(ops, ops.conv2d(x, self.conv_in))                    # (B, h, w, C_last)
        for resnets, upsample in self.ups:
            for res in resnets:
                x = res(ops, x)
            if upsample is not None:
                x = upsample(ops, x)                                      # nearest x2, conv 3x3
        x = self.out(ops, x)                                              # (B, H, W, 3)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class NativeVaeEncoder:
    """VaeEncoder (components.py): Encoder + quant_conv -> moments (mean, log-variance)."""

    def __init__(self, config: VaeConfig, ops: Ops, conv_in: Conv,
                 downs: list[tuple[list[ResnetBlock2D], Downsample2D | None]], mid: _Mid, out: _Out,
                 quant: Conv | None):
        self.config, self.ops = config, ops
        self.latent_channels, self.scale_factor = config.latent_channels, config.scale_factor
        self.conv_in, self.downs, self.mid, self.out, self.quant = conv_in, downs, mid, out, quant

    @classmethod
    def from_tensors(cls, config: VaeConfig, tensors: Mapping[str, np.ndarray], ops: Ops,
                     dtype: str = "f32") -> "NativeVaeEncoder":
        p, lat2, g = _params(config, tensors, dtype), 2 * config.latent_channels, config.norm_num_groups
        chans = config.block_out_channels
        downs, prev = [], chans[0]
        for i, ch in enumerate(chans):
            pre = f"encoder.down_blocks.{i}"
            res = [ResnetBlock2D.load(p, f"{pre}.resnets.{j}", prev if j == 0 else ch, ch, None, g, EPS)
                   for j in range(config.layers_per_block)]
            last = i == len(chans) - 1
            downs.append((res, None if last else Downsample2D.load(p, f"{pre}.downsamplers.0", ch, padding=0)))
            prev = ch
        quant = p.conv("quant_conv", lat2, lat2, 1) if config.use_quant_conv else None
        return cls(config, ops, p.conv("encoder.conv_in", config.in_channels, chans[0], 3), downs,
                   _Mid.load(p, "encoder.mid_block", chans[-1], config), _Out.load(p, "encoder", chans[-1], lat2, g),
                   quant)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        ops = self.ops
        x = ops.conv2d(_check_image(image, self.config.in_channels, self.scale_factor, "VAE encoder"), self.conv_in)
        for resnets, downsample in self.downs:
            for res in resnets:
                x = res(ops, x)
            if downsample is not None:
                x = downsample(ops, x)                                    # pad (0, 1, 0, 1), 3x3 stride 2
        x = self.out(ops, self.mid(ops, x))                               # (B, h, w, 2L)
        if self.quant is not None:
            x = ops.conv2d(x, self.quant)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
