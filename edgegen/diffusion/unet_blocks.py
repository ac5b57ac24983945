"""Building blocks of diffusers' UNets (and AutoencoderKL), channels-last over ``Ops``.

Each block is built once from the model file's tensors (``Params``: name -> array, checked
against the shape the config implies) under a name prefix such as ``"down_blocks.0.resnets.1"``,
and called as ``block(ops, x, ...)`` on float32 activations: images (B, H, W, C), sequences
(B, N, C). The math follows diffusers 0.35 (resnet.py, attention_processor.py, attention.py,
transformers/transformer_2d.py, embeddings.py, downsampling.py, upsampling.py); the comment
beside each weight gives its shape in the file (PyTorch layout).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from edgegen.diffusion.ops import WEIGHT_DTYPES, Conv, Ops, Weight
from edgegen.diffusion.weights import release_pages
from edgegen.errors import ModelFileError

# Pre-0.14 diffusers files name the attention block's projections differently; diffusers renames
# them when it loads such a file, and so do we.
DEPRECATED_ATTN_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


# ---- loading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    """The tensors of one model file; ``dtype`` ("f32" | "f16") is how weight matrices are stored
    (norm parameters, biases and embedding tables stay float32); ``source`` names the file in errors."""
    tensors: Mapping[str, np.ndarray]
    dtype: str = "f32"
    source: str = "diffusion_pytorch_model.safetensors"

    def has(self, name: str) -> bool:
        return name in self.tensors

    def stored(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor ``name`` as the file holds it (memory-mapped), checked to have ``shape``."""
        shape = tuple(int(s) for s in shape)
        if name not in self.tensors:
            raise ModelFileError(f"{self.source}: tensor {name!r} is missing (expected shape {shape})")
        arr = np.asarray(self.tensors[name])
        if tuple(arr.shape) != shape:
            raise ModelFileError(f"{self.source}: tensor {name!r}: expected shape {shape}, found {tuple(arr.shape)}")
        return arr

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor ``name`` as float32 (in place where the file holds float32), checked to have ``shape``."""
        return np.ascontiguousarray(self.stored(name, shape), dtype=np.float32)

    def matrix(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A weight matrix in ``dtype`` (in place where the file holds that type)."""
        stored = self.stored(name, shape)
        out = np.ascontiguousarray(stored, dtype=WEIGHT_DTYPES[self.dtype])
        if not np.shares_memory(out, stored):
            release_pages(stored)
        return out

    def conv(self, prefix: str, cin: int, cout: int, k: int, stride: int = 1,
             padding: int | tuple[int, int, int, int] | None = None) -> Conv:
        """nn.Conv2d ``prefix`` (weight (cout, cin, k, k), bias (cout,)); padding defaults to (k - 1) // 2.
        The weight is reordered for the channels-last kernels: a copy, so the file's pages are let go."""
        stored = self.stored(f"{prefix}.weight", (cout, cin, k, k))
        b = self.array(f"{prefix}.bias", (cout,))
        pad = (k - 1) // 2 if padding is None else padding
        conv = Conv.from_torch(stored, b, stride=stride, padding=pad, dtype=self.dtype)
        release_pages(stored)
        return conv


@dataclass(frozen=True)
class Linear:
    weight: Weight               # (out, in)
    bias: np.ndarray | None      # (out,)

    @classmethod
    def load(cls, p: Params, prefix: str, n_in: int, n_out: int, bias: bool = True) -> "Linear":
        w = p.matrix(f"{prefix}.weight", (n_out, n_in))
        b = p.array(f"{prefix}.bias", (n_out,)) if bias else None
        return cls(Weight.from_array(w, p.dtype), b)

    @classmethod
    def load_1x1(cls, p: Params, prefix: str, n_in: int, n_out: int) -> "Linear":
        """A 1x1 nn.Conv2d (weight (out, in, 1, 1)): on channels-last pixels it is a linear layer."""
        w = p.matrix(f"{prefix}.weight", (n_out, n_in, 1, 1)).reshape(n_out, n_in)
        return cls(Weight.from_array(w, p.dtype), p.array(f"{prefix}.bias", (n_out,)))

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        return ops.linear(x, self.weight, self.bias)


@dataclass(frozen=True)
class GroupNorm:
    gamma: np.ndarray   # (C,)
    beta: np.ndarray    # (C,)
    groups: int
    eps: float

    @classmethod
    def load(cls, p: Params, prefix: str, channels: int, groups: int, eps: float) -> "GroupNorm":
        return cls(p.array(f"{prefix}.weight", (channels,)), p.array(f"{prefix}.bias", (channels,)), groups, eps)

    def __call__(self, ops: Ops, x: np.ndarray, silu: bool = False) -> np.ndarray:
        return ops.group_norm(x, self.groups, self.gamma, self.beta, self.eps, silu=silu)


@dataclass(frozen=True)
class LayerNorm:
    gamma: np.ndarray   # (C,)
    beta: np.ndarray    # (C,)
    eps: float

    @classmethod
    def load(cls, p: Params, prefix: str, channels: int, eps: float) -> "LayerNorm":
        return cls(p.array(f"{prefix}.weight", (channels,)), p.array(f"{prefix}.bias", (channels,)), eps)

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        return ops.layer_norm(x, self.gamma, self.beta, self.eps)


# ---- timestep embedding --------------------------------------------------------------------------

def timestep_embedding(t: np.ndarray, dim: int, flip_sin_to_cos: bool, freq_shift: float,
                       max_period: int = 10000) -> np.ndarray:
    """diffusers' get_timestep_embedding: t (B,) -> (B, dim) sinusoids, float32 as in PyTorch.
    freq_i = exp(-ln(max_period) * i / (dim/2 - freq_shift)); [sin, cos], or [cos, sin] if flipped."""
    half = dim // 2
    exponent = np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32) / np.float32(half - freq_shift)
    args = np.asarray(t, np.float32)[:, None] * np.exp(exponent)[None, :]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = np.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb.astype(np.float32)


@dataclass(frozen=True)
class TimestepEmbedding:
    """linear_1 -> SiLU -> linear_2."""
    linear_1: Linear    # (D, Din)
    linear_2: Linear    # (D, D)

    @classmethod
    def load(cls, p: Params, prefix: str, n_in: int, dim: int) -> "TimestepEmbedding":
        return cls(Linear.load(p, f"{prefix}.linear_1", n_in, dim), Linear.load(p, f"{prefix}.linear_2", dim, dim))

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        return self.linear_2(ops, ops.silu(self.linear_1(ops, x)))


# ---- convolutional blocks ------------------------------------------------------------------------

@dataclass(frozen=True)
class ResnetBlock2D:
    """norm1+SiLU -> conv1 (+ time_emb_proj(SiLU(temb))) -> norm2+SiLU -> conv2; + shortcut;
    / output_scale_factor. time_embedding_norm "default" only; no temb projection when temb_channels is None."""
    norm1: GroupNorm                 # (Cin,)
    conv1: Conv                      # (Cout, Cin, 3, 3)
    time_emb_proj: Linear | None     # (Cout, T)
    norm2: GroupNorm                 # (Cout,)
    conv2: Conv                      # (Cout, Cout, 3, 3)
    conv_shortcut: Linear | None     # (Cout, Cin, 1, 1) when Cin != Cout
    output_scale_factor: float = 1.0

    @classmethod
    def load(cls, p: Params, prefix: str, cin: int, cout: int, temb_channels: int | None, groups: int,
             eps: float, output_scale_factor: float = 1.0, groups_out: int | None = None) -> "ResnetBlock2D":
        temb = None if temb_channels is None else Linear.load(p, f"{prefix}.time_emb_proj", temb_channels, cout)
        shortcut = Linear.load_1x1(p, f"{prefix}.conv_shortcut", cin, cout) if cin != cout else None
        return cls(GroupNorm.load(p, f"{prefix}.norm1", cin, groups, eps), p.conv(f"{prefix}.conv1", cin, cout, 3),
                   temb, GroupNorm.load(p, f"{prefix}.norm2", cout, groups_out or groups, eps),
                   p.conv(f"{prefix}.conv2", cout, cout, 3), shortcut, output_scale_factor)

    def __call__(self, ops: Ops, x: np.ndarray, temb: np.ndarray | None = None) -> np.ndarray:
        """x (B, H, W, Cin), temb (B, T) or None -> (B, H, W, Cout)."""
        h = ops.conv2d(self.norm1(ops, x, silu=True), self.conv1)
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(ops, ops.silu(temb))[:, None, None, :]
        h = ops.conv2d(self.norm2(ops, h, silu=True), self.conv2)
        skip = x if self.conv_shortcut is None else self.conv_shortcut(ops, x)
        out = skip + h
        return out if self.output_scale_factor == 1.0 else out / np.float32(self.output_scale_factor)


@dataclass(frozen=True)
class Downsample2D:
    """3x3 conv with stride 2 (``padding`` on every side; padding 0 pads right and bottom by one, as
    diffusers' F.pad (0, 1, 0, 1)), or a 2x2 average pool when the file has no conv."""
    conv: Conv | None    # (Cout, C, 3, 3)

    @classmethod
    def load(cls, p: Params, prefix: str, channels: int, out_channels: int | None = None, padding: int = 1,
             use_conv: bool = True) -> "Downsample2D":
        if not use_conv:
            return cls(None)
        pad = (0, 1, 0, 1) if padding == 0 else padding
        return cls(p.conv(f"{prefix}.conv", channels, out_channels or channels, 3, stride=2, padding=pad))

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        if self.conv is not None:
            return ops.conv2d(x, self.conv)
        b, h, w, c = x.shape   # nn.AvgPool2d(2, 2): an odd last row/column is dropped
        x = x[:, :h // 2 * 2, :w // 2 * 2]
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4), dtype=np.float32)


@dataclass(frozen=True)
class Upsample2D:
    """Nearest 2x upsampling, then a 3x3 conv (padding 1) if the block has one."""
    conv: Conv | None    # (Cout, C, 3, 3)

    @classmethod
    def load(cls, p: Params, prefix: str, channels: int, out_channels: int | None = None,
             use_conv: bool = True) -> "Upsample2D":
        return cls(p.conv(f"{prefix}.conv", channels, out_channels or channels, 3) if use_conv else None)

    def __call__(self, ops: Ops, x: np.ndarray) -> np.ndarray:
        if self.conv is None:
            return x.repeat(2, axis=1).repeat(2, axis=2)
        return ops.conv2d(x, self.conv, upsample=2)


# ---- attention -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttnBlock:
    """UNet2DModel's / the VAE's spatial self-attention (diffusers Attention with
    _from_deprecated_attn_block): group norm -> q, k, v -> attention -> to_out; + x; / rescale."""
    group_norm: GroupNorm | None    # (C,)
    to_q: Linear                    # (H*Dh, C)
    to_k: Linear                    # (H*Dh, C)
    to_v: Linear                    # (H*Dh, C)
    to_out: Linear                  # (C, H*Dh)
    heads: int
    rescale_output_factor: float = 1.0

    @classmethod
    def load(cls, p: Params, prefix: str, channels: int, heads: int, dim_head: int, groups: int | None,
             eps: float, rescale_output_factor: float = 1.0) -> "AttnBlock":
        old = not p.has(f"{prefix}.to_q.weight") and p.has(f"{prefix}.query.weight")
        name = (lambda n: f"{prefix}.{DEPRECATED_ATTN_NAMES[n]}") if old else (lambda n: f"{prefix}.{n}")
        inner = heads * dim_head
        norm = None if groups is None else GroupNorm.load(p, f"{prefix}.group_norm", channels, groups, eps)
        return cls(norm, Linear.load(p, name("to_q"), channels, inner), Linear.load(p, name("to_k"), channels, inner),
                   Linear.load(p, name("to_v"), channels, inner), Linear.load(p, name("to_out.0"), inner, channels),
                   heads, rescale_output_factor)

    def __call__(self, ops: Ops, x: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """x (B, H, W, C) -> (B, H, W, C). ``context`` is not used (self-attention only); it is accepted
        so that a UNet block calls both kinds of attention alike."""
        b, hh, ww, c = x.shape
        h = x if self.group_norm is None else self.group_norm(ops, x)
        h = h.reshape(b, hh * ww, c)
        o = ops.attention(self.to_q(ops, h), self.to_k(ops, h), self.to_v(ops, h), self.heads)
        out = self.to_out(ops, o).reshape(x.shape) + x
        return out if self.rescale_output_factor == 1.0 else out / np.float32(self.rescale_output_factor)


@dataclass(frozen=True)
class CrossAttention:
    """BasicTransformerBlock's attn1 (self, context None) / attn2 (to the text states): no q/k/v bias."""
    to_q: Linear     # (H*Dh, C)
    to_k: Linear     # (H*Dh, Dctx)
    to_v: Linear     # (H*Dh, Dctx)
    to_out: Linear   # (C, H*Dh)
    heads: int
    # the last text states seen and their keys and values: the text is the same at every
    # denoising step, so attn2 projects it once per image, not once per step
    _memo: list = field(default_factory=lambda: [None], compare=False, repr=False)

    @classmethod
    def load(cls, p: Params, prefix: str, dim: int, context_dim: int, heads: int, dim_head: int,
             bias: bool = False) -> "CrossAttention":
        inner = heads * dim_head
        return cls(Linear.load(p, f"{prefix}.to_q", dim, inner, bias),
                   Linear.load(p, f"{prefix}.to_k", context_dim, inner, bias),
                   Linear.load(p, f"{prefix}.to_v", context_dim, inner, bias),
                   Linear.load(p, f"{prefix}.to_out.0", inner, dim), heads)

    def __call__(self, ops: Ops, x: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """x (B, N, C), context (B, L, Dctx) or None (self-attention) -> (B, N, C)."""
        if context is None:
            k, v = self.to_k(ops, x), self.to_v(ops, x)
        else:
            k, v = self._context_kv(ops, context)
        return self.to_out(ops, ops.attention(self.to_q(ops, x), k, v, self.heads))

    def _context_kv(self, ops: Ops, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of ``context``, reused while the caller passes the same unchanged array
        (held here, so its identity cannot be taken by another array; compared by content too)."""
        memo = self._memo[0]
        if memo is not None and memo[0] is context and np.array_equal(memo[1], context):
            return memo[2], memo[3]
        k, v = self.to_k(ops, context), self.to_v(ops, context)
        self._memo[0] = (context, context.copy(), k, v)
        return k, v


@dataclass(frozen=True)
class BasicTransformerBlock:
    """x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)), ff = GEGLU then linear."""
    norm1: LayerNorm        # (C,)
    attn1: CrossAttention
    norm2: LayerNorm        # (C,)
    attn2: CrossAttention
    norm3: LayerNorm        # (C,)
    ff_in: Linear           # ff.net.0.proj (2 * 4C, C)
    ff_out: Linear          # ff.net.2 (C, 4C)

    @classmethod
    def load(cls, p: Params, prefix: str, dim: int, context_dim: int, heads: int, dim_head: int,
             eps: float = 1e-5) -> "BasicTransformerBlock":
        ff = 4 * dim
        return cls(LayerNorm.load(p, f"{prefix}.norm1", dim, eps),
                   CrossAttention.load(p, f"{prefix}.attn1", dim, dim, heads, dim_head),
                   LayerNorm.load(p, f"{prefix}.norm2", dim, eps),
                   CrossAttention.load(p, f"{prefix}.attn2", dim, context_dim, heads, dim_head),
                   LayerNorm.load(p, f"{prefix}.norm3", dim, eps),
                   Linear.load(p, f"{prefix}.ff.net.0.proj", dim, 2 * ff),
                   Linear.load(p, f"{prefix}.ff.net.2", ff, dim))

    def __call__(self, ops: Ops, x: np.ndarray, context: np.ndarray) -> np.ndarray:
        x = x + self.attn1(ops, self.norm1(ops, x))
        x = x + self.attn2(ops, self.norm2(ops, x), context)
        return x + self.ff_out(ops, ops.geglu(self.ff_in(ops, self.norm3(ops, x))))


@dataclass(frozen=True)
class Transformer2D:
    """Transformer2DModel on continuous input: group norm (eps 1e-6) -> proj_in (1x1 conv or linear,
    the same product on channels-last pixels) -> transformer blocks -> proj_out; + x."""
    norm: GroupNorm                           # (C,)
    proj_in: Linear                           # (inner, C) or (inner, C, 1, 1)
    blocks: tuple[BasicTransformerBlock, ...]
    proj_out: Linear                          # (C, inner) or (C, inner, 1, 1)

    @classmethod
    def load(cls, p: Params, prefix: str, channels: int, heads: int, dim_head: int, context_dim: int,
             groups: int, layers: int = 1, use_linear_projection: bool = False) -> "Transformer2D":
        inner = heads * dim_head
        proj = Linear.load if use_linear_projection else Linear.load_1x1
        blocks = tuple(BasicTransformerBlock.load(p, f"{prefix}.transformer_blocks.{i}", inner, context_dim, heads,
                                                  dim_head) for i in range(layers))
        return cls(GroupNorm.load(p, f"{prefix}.norm", channels, groups, 1e-6),
                   proj(p, f"{prefix}.proj_in", channels, inner), blocks,
                   proj(p, f"{prefix}.proj_out", inner, channels))

    def __call__(self, ops: Ops, x: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """x (B, H, W, C), context (B, L, Dctx) -> (B, H, W, C)."""
        b, hh, ww, _ = x.shape
        h = self.proj_in(ops, self.norm(ops, x))
        h = h.reshape(b, hh * ww, h.shape[-1])
        for block in self.blocks:
            h = block(ops, h, context)
        return self.proj_out(ops, h).reshape(x.shape) + x
