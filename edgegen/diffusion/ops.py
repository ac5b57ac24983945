"""Layer operations of the native diffusion models (unet.py, vae.py, clip.py), over edgegen's kernels.

Inside the native models activations are float32 and channels-last: images (B, H, W, C),
sequences (B, N, C). Convolutions are products of patches (im2col) with the weight reshaped
to (Cout, kh * kw * Cin), so a convolution, a linear layer and attention's products all run
on the same float GEMM (kernels/cpp/gemm.h, float activations) as the text engine's prompts.

``Ops(impl="cpp")`` calls the C++ kernels (kernels/cpp/diffusion.h: conv2d with the nearest
upsampling folded into its patch gather, group_norm (+SiLU), layer_norm, multihead_attention,
geglu, silu, guided_update; linear layers are 1x1 convolutions); ``Ops(impl="ref")`` the NumPy
references in kernels/diffusion_ref.py (the spec and the test oracle). Weights are float32 or
float16 (``Weight``), used in place. ``attention_chunk`` bounds attention's score matrix to that
many query rows at a time (the C++ kernel holds 16 rows per thread whatever the chunk).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegen.constants import GGMLType
from edgegen.errors import UsageError

IMPLS = ("cpp", "ref")
WEIGHT_DTYPES = {"f32": np.float32, "f16": np.float16}
_QTYPES = {np.dtype(np.float32): GGMLType.F32, np.dtype(np.float16): GGMLType.F16}


@dataclass(frozen=True)
class Weight:
    """A (N, K) weight matrix (out features x in features), float32 or float16, C-contiguous."""
    w: np.ndarray

    @classmethod
    def from_array(cls, arr: np.ndarray, dtype: str = "f32") -> "Weight":
        if dtype not in WEIGHT_DTYPES:
            raise UsageError(f"weight dtype: expected one of {', '.join(WEIGHT_DTYPES)}, found {dtype!r}")
        if arr.ndim != 2:
            raise UsageError(f"Weight.from_array: expected a 2-D (out, in) array, found shape {arr.shape}")
        return cls(np.ascontiguousarray(arr, dtype=WEIGHT_DTYPES[dtype]))

    @property
    def n(self) -> int:
        return self.w.shape[0]

    @property
    def k(self) -> int:
        return self.w.shape[1]

    @property
    def qtype(self) -> GGMLType:
        return _QTYPES[self.w.dtype]

    @property
    def raw(self) -> np.ndarray:
        """The rows as bytes (N, row_bytes): what the C++ matmul reads."""
        return self.w.view(np.uint8)


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution: weight (Cout, kh * kw * Cin) in (kh, kw, Cin) order, bias (Cout,) or None,
    stride, and padding (top, bottom, left, right) in input pixels."""
    weight: Weight
    bias: np.ndarray | None
    kh: int
    kw: int
    stride: int = 1
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)

    @classmethod
    def from_torch(cls, w: np.ndarray, bias: np.ndarray | None, stride: int = 1, padding: int | tuple = 0,
                   dtype: str = "f32") -> "Conv":
        """From PyTorch's (Cout, Cin, kh, kw) layout; ``padding`` an int (all sides) or (top, bottom, left, right)."""
        if w.ndim != 4:
            raise UsageError(f"Conv.from_torch: expected a (Cout, Cin, kh, kw) weight, found shape {w.shape}")
        cout, cin, kh, kw = w.shape
        pad = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        flat = np.asarray(w, np.float32).transpose(0, 2, 3, 1).reshape(cout, kh * kw * cin)
        b = None if bias is None else np.ascontiguousarray(bias, np.float32)
        return cls(Weight.from_array(flat, dtype), b, kh, kw, stride, pad)

    @property
    def cin(self) -> int:
        return self.weight.k // (self.kh * self.kw)

    @property
    def cout(self) -> int:
        return self.weight.n


def out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    return (size + pad_lo + pad_hi - k) // stride + 1


class Ops:
    def __init__(self, impl: str = "cpp", threads: int = 1, attention_chunk: int | None = None):
        if impl not in IMPLS:
            raise UsageError(f"ops impl: expected one of {', '.join(IMPLS)}, found {impl!r}")
        if attention_chunk is not None and attention_chunk < 1:
            raise UsageError(f"attention_chunk: expected a positive number of query rows, found {attention_chunk}")
        self.impl, self.threads, self.attention_chunk = impl, max(1, int(threads)), attention_chunk
        self._cpp = None
        if impl == "cpp":
            from edgegen.kernels import _cpp
            self._cpp = _cpp
        from edgegen.kernels import diffusion_ref
        self._ref = diffusion_ref

    # ---- products ------------------------------------------------------------------------

    def linear(self, x: np.ndarray, weight: Weight, bias: np.ndarray | None = None) -> np.ndarray:
        """x (..., K) -> (..., N) = x W^T + bias."""
        lead, k = x.shape[:-1], x.shape[-1]
        if k != weight.k:
            raise UsageError(f"linear: x has {k} features, the weight expects {weight.k}")
        x2 = np.ascontiguousarray(x.reshape(1, 1, -1, k), np.float32)
        out = np.empty((1, 1, x2.shape[2], weight.n), np.float32)
        kernel = self._cpp.conv2d if self._cpp is not None else self._ref.conv2d_ref
        kernel(x2, weight.raw, int(weight.qtype), bias, 1, 1, 1, 0, 0, 0, 0, 1, out, self.threads)
        return out.reshape(*lead, weight.n)

    def conv2d(self, x: np.ndarray, conv: Conv, upsample: int = 1) -> np.ndarray:
        """x (B, H, W, Cin), nearest-upsampled by ``upsample`` first -> (B, Ho, Wo, Cout)."""
        if x.shape[-1] != conv.cin:
            raise UsageError(f"conv2d: x has {x.shape[-1]} channels, the weight expects {conv.cin}")
        if upsample not in (1, 2):
            raise UsageError(f"conv2d: upsample must be 1 or 2, found {upsample}")
        b, h, w, _ = x.shape
        pt, pb, pl, pr = conv.pad
        ho = out_size(h * upsample, conv.kh, conv.stride, pt, pb)
        wo = out_size(w * upsample, conv.kw, conv.stride, pl, pr)
        out = np.empty((b, ho, wo, conv.cout), np.float32)
        kernel = self._cpp.conv2d if self._cpp is not None else self._ref.conv2d_ref
        kernel(np.ascontiguousarray(x, np.float32), conv.weight.raw, int(conv.weight.qtype), conv.bias, conv.kh,
               conv.kw, conv.stride, pt, pb, pl, pr, upsample, out, self.threads)
        return out

    # ---- norms and activations -------------------------------------------------------------

    def group_norm(self, x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray, eps: float,
                   silu: bool = False) -> np.ndarray:
        """GroupNorm over channels-last x (B, ..., C) (statistics per batch and group), then SiLU if asked."""
        b, c = x.shape[0], x.shape[-1]
        if c % groups:
            raise UsageError(f"group_norm: {c} channels do not split into {groups} groups")
        x3 = np.ascontiguousarray(x, np.float32).reshape(b, -1, c)
        out = np.empty_like(x3)
        kernel = self._cpp.group_norm if self._cpp is not None else self._ref.group_norm_ref
        kernel(x3, groups, _f32(gamma), _f32(beta), float(eps), bool(silu), out, self.threads)
        return out.reshape(x.shape)

    def layer_norm(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
        """LayerNorm over the last axis of x (..., D)."""
        x2 = np.ascontiguousarray(x, np.float32).reshape(-1, x.shape[-1])
        out = np.empty_like(x2)
        kernel = self._cpp.layer_norm if self._cpp is not None else self._ref.layer_norm_ref
        kernel(x2, _f32(gamma), _f32(beta), float(eps), out, self.threads)
        return out.reshape(x.shape)

    def silu(self, x: np.ndarray) -> np.ndarray:
        """x * sigmoid(x), any shape."""
        x = np.ascontiguousarray(x, np.float32)
        out = np.empty_like(x)
        if self._cpp is not None:
            self._cpp.silu(x, out, self.threads)
        else:
            self._ref.silu_ref(x, out)
        return out

    def gelu(self, x: np.ndarray, approximate: str = "none") -> np.ndarray:
        """GELU: exact (erf) or the tanh approximation, as torch.nn.functional.gelu. The exact one runs
        on the GEGLU kernel (a unit first half: 1 * gelu(x))."""
        if self._cpp is None or approximate != "none":
            from edgegen.kernels.diffusion_ref import gelu_ref
            return gelu_ref(x, approximate)
        x2 = np.ascontiguousarray(x, np.float32).reshape(-1, x.shape[-1])
        return self.geglu(np.concatenate([np.ones_like(x2), x2], axis=1)).reshape(x.shape)

    def quick_gelu(self, x: np.ndarray) -> np.ndarray:
        """CLIP's x * sigmoid(1.702 x), as silu(1.702 x) / 1.702 on the SiLU kernel."""
        if self._cpp is None:
            return (x / (1.0 + np.exp(-1.702 * x.astype(np.float64)))).astype(np.float32)
        y = self.silu(np.asarray(x, np.float32) * np.float32(1.702))
        y *= np.float32(1 / 1.702)
        return y

    def geglu(self, x: np.ndarray) -> np.ndarray:
        """diffusers' GEGLU after its projection: x (..., 2F) -> x[..., :F] * gelu(x[..., F:])."""
        f2 = x.shape[-1]
        if f2 % 2:
            raise UsageError(f"geglu: expected an even number of features (2F), found {f2}")
        x2 = np.ascontiguousarray(x, np.float32).reshape(-1, f2)
        out = np.empty((len(x2), f2 // 2), np.float32)
        kernel = self._cpp.geglu if self._cpp is not None else self._ref.geglu_ref
        kernel(x2, out, self.threads)
        return out.reshape(*x.shape[:-1], f2 // 2)

    # ---- attention ---------------------------------------------------------------------------

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, causal: bool = False) -> np.ndarray:
        """softmax(q k^T / sqrt(Dh)) v per head; q (B, Nq, H*Dh), k and v (B, Nk, H*Dh) -> (B, Nq, H*Dh).
        causal: query i sees keys 0..i (CLIP's text encoder)."""
        b, nq, d = q.shape
        nk = k.shape[1]
        if d % heads or k.shape != (b, nk, d) or v.shape != (b, nk, d):
            raise UsageError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit {heads} heads")
        out = np.empty((b, nq, d), np.float32)
        kernel = self._cpp.multihead_attention if self._cpp is not None else self._ref.multihead_attention_ref
        kernel(_f32(q), _f32(k), _f32(v), heads, bool(causal), self.attention_chunk or 0, out, self.threads)
        return out

    # ---- sampling ------------------------------------------------------------------------------

    def guided_update(self, x: np.ndarray, uncond: np.ndarray, cond: np.ndarray, scale: float, cx: float,
                      cout: float, noise: np.ndarray | None = None, cnoise: float = 0.0,
                      out: np.ndarray | None = None) -> np.ndarray:
        """cx * x + cout * (uncond + scale * (cond - uncond)) + cnoise * noise in one pass (classifier-free
        guidance and a linear scheduler step); ``out`` may be x (written in place)."""
        x = _f32(x)
        if out is None:
            out = np.empty_like(x)
        kernel = self._cpp.guided_update if self._cpp is not None else self._ref.guided_update_ref
        kernel(x, _f32(uncond), _f32(cond), float(scale), float(cx), float(cout),
               None if noise is None else _f32(noise), float(cnoise), out, self.threads)
        return out


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32)
