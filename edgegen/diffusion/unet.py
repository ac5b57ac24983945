"""Native UNet denoisers: diffusers' UNet2DModel (unconditional or class-conditional, pixel space)
and UNet2DConditionModel (Stable Diffusion: cross-attention to text states), over ``Ops``.

    config = UNetConfig.from_hf_config(json.load(open("unet/config.json")), "unet/config.json")
    unet = NativeUNet.from_tensors(config, tensors, Ops("cpp", threads=4), dtype="f16")
    eps = unet(latents, t, text_states)          # NCHW float32 in and out (components.Denoiser)

The forward pass is diffusers' (unet_2d.py, unet_2d_condition.py, unet_2d_blocks.py): time
embedding -> conv_in -> down blocks (their outputs kept as skips) -> mid block -> up blocks
(each resnet takes the last skip, concatenated on channels) -> group norm + SiLU -> conv_out.
Activations are channels-last inside: NCHW -> NHWC once at entry and back once at exit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from edgegen.diffusion.ops import Conv, Ops
from edgegen.diffusion.unet_blocks import (AttnBlock, Downsample2D, GroupNorm, Params, ResnetBlock2D,
                                           TimestepEmbedding, Transformer2D, Upsample2D, timestep_embedding)
from edgegen.diffusion.unet_config import CROSS_ATTN_BLOCKS, SELF_ATTN_BLOCKS, UNetConfig
from edgegen.errors import UsageError

__all__ = ["NativeUNet", "UNetConfig"]

Attention = AttnBlock | Transformer2D


# ---- the blocks' containers ------------------------------------------------------------------

@dataclass(frozen=True)
class DownBlock:
    """DownBlock2D / AttnDownBlock2D / CrossAttnDownBlock2D: (resnet [-> attention]) x n [-> downsample].
    Returns the new x and the skips (each layer's output, then the downsampled one)."""
    resnets: tuple[ResnetBlock2D, ...]
    attentions: tuple[Attention, ...]      # empty for DownBlock2D
    downsampler: Downsample2D | None

    def __call__(self, ops: Ops, x: np.ndarray, temb: np.ndarray, ctx: np.ndarray | None):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(ops, x, temb)
            if self.attentions:
                x = self.attentions[i](ops, x, ctx)
            skips.append(x)
        if self.downsampler is not None:
            x = self.downsampler(ops, x)
            skips.append(x)
        return x, skips


@dataclass(frozen=True)
class UpBlock:
    """UpBlock2D / AttnUpBlock2D / CrossAttnUpBlock2D: (concat skip -> resnet [-> attention]) x n [-> upsample]."""
    resnets: tuple[ResnetBlock2D, ...]
    attentions: tuple[Attention, ...]
    upsampler: Upsample2D | None

    def __call__(self, ops: Ops, x: np.ndarray, skips: list[np.ndarray], temb: np.ndarray,
                 ctx: np.ndarray | None) -> np.ndarray:
        for i, resnet in enumerate(self.resnets):
            x = resnet(ops, np.concatenate([x, skips.pop()], axis=-1), temb)
            if self.attentions:
                x = self.attentions[i](ops, x, ctx)
        return x if self.upsampler is None else self.upsampler(ops, x)


@dataclass(frozen=True)
class MidBlock:
    """UNetMidBlock2D / UNetMidBlock2DCrossAttn: resnet, then (attention or none -> resnet) per layer."""
    first: ResnetBlock2D
    layers: tuple[tuple[Attention | None, ResnetBlock2D], ...]

    def __call__(self, ops: Ops, x: np.ndarray, temb: np.ndarray, ctx: np.ndarray | None) -> np.ndarray:
        x = self.first(ops, x, temb)
        for attn, resnet in self.layers:
            if attn is not None:
                x = attn(ops, x, ctx)
            x = resnet(ops, x, temb)
        return x


# ---- building them from the config -------------------------------------------------------------

@dataclass(frozen=True)
class _Builder:
    """What every block of one model shares: the tensors and the config."""
    p: Params
    cfg: UNetConfig

    def resnet(self, prefix: str, cin: int, cout: int, scale: float = 1.0) -> ResnetBlock2D:
        c = self.cfg
        return ResnetBlock2D.load(self.p, prefix, cin, cout, c.time_embed_dim, c.norm_num_groups, c.norm_eps, scale)

    def attention(self, cross: bool, prefix: str, channels: int, block: int, heads: int | None = None,
                  scale: float = 1.0, groups: int | None = None) -> Attention:
        """Transformer2D for CrossAttn* blocks (``heads`` heads of channels // heads), else AttnBlock
        (Attn* blocks, UNet2DModel's mid block: heads of the block's attention_head_dim channels)."""
        c = self.cfg
        if cross:
            return Transformer2D.load(self.p, prefix, channels, heads, channels // heads, c.cross_attention_dim,
                                      c.norm_num_groups, c.transformer_layers_per_block, c.use_linear_projection)
        dim_head = c.attention_head_dim[block] or channels
        return AttnBlock.load(self.p, prefix, channels, channels // dim_head, dim_head,
                              groups or c.norm_num_groups, c.norm_eps, scale)

    def attentions(self, kind: str, prefix: str, n: int, channels: int, block: int, heads: int | None) -> tuple:
        """The n attentions of a block of type ``kind`` (none for DownBlock2D / UpBlock2D)."""
        if kind not in SELF_ATTN_BLOCKS | CROSS_ATTN_BLOCKS:
            return ()
        return tuple(self.attention(kind in CROSS_ATTN_BLOCKS, f"{prefix}.attentions.{j}", channels, block, heads)
                     for j in range(n))

    def down(self, i: int, cin: int, cout: int, last: bool) -> DownBlock:
        c, kind, pre = self.cfg, self.cfg.down_block_types[i], f"down_blocks.{i}"
        n = c.layers_per_block[i]
        resnets = tuple(self.resnet(f"{pre}.resnets.{j}", cin if j == 0 else cout, cout) for j in range(n))
        attns = self.attentions(kind, pre, n, cout, i, c.num_attention_heads[i])
        down = None if last else Downsample2D.load(self.p, f"{pre}.downsamplers.0", cout, cout, c.downsample_padding)
        return DownBlock(resnets, attns, down)

    def up(self, i: int, prev: int, cout: int, skip_in: int, last: bool) -> UpBlock:
        c, kind, pre = self.cfg, self.cfg.up_block_types[i], f"up_blocks.{i}"
        n = c.layers_per_block[::-1][i] + 1
        # resnet j takes x (prev channels, then cout) concatenated with a skip (skip_in for the last)
        cins = [(prev if j == 0 else cout) + (skip_in if j == n - 1 else cout) for j in range(n)]
        resnets = tuple(self.resnet(f"{pre}.resnets.{j}", cins[j], cout) for j in range(n))
        attns = self.attentions(kind, pre, n, cout, i, c.num_attention_heads[::-1][i])
        up = None if last else Upsample2D.load(self.p, f"{pre}.upsamplers.0", cout, cout)
        return UpBlock(resnets, attns, up)

    def mid(self) -> MidBlock | None:
        c, ch, kind = self.cfg, self.cfg.block_out_channels[-1], self.cfg.mid_block_type
        if kind is None:
            return None
        scale = c.mid_block_scale_factor
        first = self.resnet("mid_block.resnets.0", ch, ch, scale)
        if kind == "UNetMidBlock2DCrossAttn":
            attn = self.attention(True, "mid_block.attentions.0", ch, -1, c.num_attention_heads[-1])
            return MidBlock(first, ((attn, self.resnet("mid_block.resnets.1", ch, ch, scale)),))
        if c.conditional:   # UNet2DConditionModel's UNetMidBlock2D: num_layers=0, one resnet
            return MidBlock(first, ())
        attn = (self.attention(False, "mid_block.attentions.0", ch, -1, scale=scale, groups=c.attn_norm_num_groups)
                if c.add_attention else None)
        return MidBlock(first, ((attn, self.resnet("mid_block.resnets.1", ch, ch, scale)),))


# ---- the model -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NativeUNet:
    """A components.Denoiser: x (B, C, H, W), timestep t, cond (text states (B, L, D), class labels
    (B,), or None) -> (B, out_channels, H, W), all float32 NCHW."""
    config: UNetConfig
    ops: Ops
    time_embedding: TimestepEmbedding               # linear_1 (T, C0), linear_2 (T, T)
    class_embedding: np.ndarray | None              # (num_class_embeds, T), float32
    conv_in: Conv                                   # (C0, in_channels, k, k)
    down_blocks: tuple[DownBlock, ...]
    mid_block: MidBlock | None
    up_blocks: tuple[UpBlock, ...]
    conv_norm_out: GroupNorm                        # (C0,)
    conv_out: Conv                                  # (out_channels, C0, k, k)
    dtype: str = "f32"                              # how the weight matrices are stored

    @classmethod
    def from_tensors(cls, config: UNetConfig, tensors: Mapping[str, np.ndarray], ops: Ops,
                     dtype: str = "f32", source: str | None = None) -> "NativeUNet":
        """Build from the tensors of diffusion_pytorch_model.safetensors (named as diffusers saves them;
        ``source``, the file, is named in errors); weight matrices are converted once here and stored as
        ``dtype`` ("f32" | "f16"), norm parameters and biases stay float32."""
        if source is None:
            source = str(Path(config.path).with_name("diffusion_pytorch_model.safetensors")) if config.path \
                else "diffusion_pytorch_model.safetensors"
        p = Params(tensors, dtype, source)
        c, b = config, _Builder(p, config)
        ch = c.block_out_channels
        temb = TimestepEmbedding.load(p, "time_embedding", ch[0], c.time_embed_dim)
        cls_emb = None if c.num_class_embeds is None else \
            p.array("class_embedding.weight", (c.num_class_embeds, c.time_embed_dim))
        conv_in = p.conv("conv_in", c.in_channels, ch[0], c.conv_in_kernel)
        n = len(ch)
        downs = tuple(b.down(i, ch[max(i - 1, 0)], ch[i], i == n - 1) for i in range(n))
        rev = ch[::-1]
        ups = tuple(b.up(i, rev[max(i - 1, 0)], rev[i], rev[min(i + 1, n - 1)], i == n - 1) for i in range(n))
        norm_out = GroupNorm.load(p, "conv_norm_out", ch[0], c.norm_num_groups, c.norm_eps)
        conv_out = p.conv("conv_out", ch[0], c.out_channels, c.conv_out_kernel)
        return cls(c, ops, temb, cls_emb, conv_in, downs, b.mid(), ups, norm_out, conv_out, dtype)

    # Denoiser protocol attributes
    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    @property
    def sample_size(self) -> int:
        return self.config.sample_size

    @property
    def cross_attention_dim(self) -> int | None:
        return self.config.cross_attention_dim if self.config.conditional else None

    @property
    def num_class_embeds(self) -> int | None:
        return self.config.num_class_embeds

    def _check_inputs(self, x: np.ndarray, cond) -> None:
        c, mult = self.config, 2 ** (len(self.config.block_out_channels) - 1)
        if x.ndim != 4 or x.shape[1] != c.in_channels or x.shape[2] % mult or x.shape[3] % mult:
            raise UsageError(f"UNet input: expected (B, {c.in_channels}, H, W) with H and W multiples of {mult}, "
                             f"found shape {x.shape}")
        b = x.shape[0]
        if c.conditional:
            if cond is None or cond.ndim != 3 or cond.shape[0] != b or cond.shape[2] != c.cross_attention_dim:
                found = None if cond is None else cond.shape
                raise UsageError(f"UNet cond: expected text states ({b}, L, {c.cross_attention_dim}), found {found}")
        elif c.num_class_embeds is not None:
            if cond is None or cond.shape != (b,) or not np.issubdtype(cond.dtype, np.integer) \
                    or cond.min() < 0 or cond.max() >= c.num_class_embeds:
                found = None if cond is None else f"{cond.dtype} {cond.shape}"
                raise UsageError(f"UNet cond: expected {b} integer class labels in [0, {c.num_class_embeds}), "
                                 f"found {found}")
        elif cond is not None:
            raise UsageError(f"UNet cond: this unconditional UNet2DModel takes None, found an array {cond.shape}")

    def _embed_time(self, t: float, cond, batch: int) -> np.ndarray:
        c = self.config
        sin = timestep_embedding(np.full(batch, t, np.float32), c.block_out_channels[0], c.flip_sin_to_cos,
                                 c.freq_shift)
        temb = self.time_embedding(self.ops, sin)
        if self.class_embedding is not None:
            temb = temb + self.class_embedding[np.asarray(cond, np.int64)]
        return temb

    def __call__(self, x: np.ndarray, t: float, cond: np.ndarray | None = None) -> np.ndarray:
        ops, c = self.ops, self.config
        x = np.asarray(x, np.float32)
        self._check_inputs(x, cond)
        ctx = np.ascontiguousarray(cond, np.float32) if c.conditional else None
        # 1. time (+ class) embedding (B, T)
        temb = self._embed_time(float(t), cond, x.shape[0])
        # 2. NCHW -> NHWC, conv_in
        h = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if c.center_input_sample:
            h = 2 * h - 1.0
        h = ops.conv2d(h, self.conv_in)
        # 3. down path, keeping every output as a skip
        skips = [h]
        for block in self.down_blocks:
            h, res = block(ops, h, temb, ctx)
            skips += res
        # 4. mid
        if self.mid_block is not None:
            h = self.mid_block(ops, h, temb, ctx)
        # 5. up path, each resnet consuming the last skip
        for block in self.up_blocks:
            h = block(ops, h, skips, temb, ctx)
        # 6. out: group norm + SiLU, conv_out, NHWC -> NCHW
        h = ops.conv2d(self.conv_norm_out(ops, h, silu=True), self.conv_out)
        return np.ascontiguousarray(h.transpose(0, 3, 1, 2))
