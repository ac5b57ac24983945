"""The Llama-family decoder (``llama.py``) with its weights and KV cache resident on a CUDA device.

Every weight matrix is uploaded once as its raw GGUF blocks (``DeviceTensor``); the kernels of
``edgegen.kernels.cuda`` decode them in the products. One ``step`` runs one token; a prompt runs
its tokens one at a time through the same decode kernels (simple, and slower than a batched
prefill: stated so). Only the logits, when asked, or the greedy token id leave the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgegen.constants import RopeStyle
from edgegen.errors import ContextLengthError
from edgegen.models.llama import LlamaConfig, Weights


@dataclass(frozen=True)
class CudaLaunch:
    """Launch shapes: the GPU defaults, or tiny blocks for the simulator (same kernels)."""
    matvec: object = None       # MatvecLaunch (None: the GPU default)
    attention: object = None    # AttentionLaunch
    threads: int = 128          # elementwise / reducing kernels


@dataclass(frozen=True)
class DeviceLayer:
    attn_norm: object; wq: object; wk: object; wv: object; wo: object      # noqa: E702  norms (dim,); W (rows, cols)
    bq: object; bk: object; bv: object                                     # noqa: E702  (q_dim,), (kv_dim,) or None
    ffn_norm: object; w_gate: object; w_up: object; w_down: object         # noqa: E702


class DeviceKVCache:
    """k, v (n_layers, n_kv_heads, capacity, head_dim) float32 on the device; ``length`` positions held."""

    def __init__(self, cuda, c: LlamaConfig, capacity: int):
        shape = (c.n_layers, c.n_kv_heads, capacity, c.head_dim)
        self.k = cuda.device_array(shape, np.float32)
        self.v = cuda.device_array(shape, np.float32)
        self.capacity = capacity
        self.length = 0

    def check(self, pos: int, n: int) -> None:
        if pos + n > self.capacity:
            raise ContextLengthError(f"context full: positions {pos}..{pos + n - 1} do not fit in a context of {self.capacity}")
        if pos != self.length:
            raise ValueError(f"KV cache: write at {pos}, but it holds {self.length} positions")

    def truncate(self, n: int) -> None:
        self.length = min(self.length, n)


@dataclass
class _Scratch:
    """Per-token activations on the device (allocated once per model)."""
    x: object; h: object; q: object; k: object; v: object; att: object     # noqa: E702
    gate: object; up: object; logits: object; token: object; attn: tuple = field(default=())  # noqa: E702


class CudaLlama:
    """Device-resident weights and the one-token forward pass."""

    def __init__(self, c: LlamaConfig, w: Weights, n_ctx: int, launch: CudaLaunch = CudaLaunch()):
        from edgegen.kernels.cuda.device import require_cuda
        self.cuda = cuda = require_cuda()
        from edgegen.kernels.cuda import attention, matvec
        self.c, self.n_ctx = c, n_ctx
        self.mv_launch = launch.matvec or matvec.GPU_LAUNCH
        self.attn_launch = launch.attention or attention.GPU_LAUNCH
        self.threads = launch.threads

        def mat(t):
            return matvec.DeviceTensor.upload(t.data, t.qtype, t.rows, t.cols)

        def vec(a):
            return None if a is None else cuda.to_device(np.ascontiguousarray(a, np.float32))

        self.token_embd = mat(w.token_embd)
        self.output = self.token_embd if w.output is w.token_embd else mat(w.output)
        self.output_norm = vec(w.output_norm)
        self.layers = tuple(DeviceLayer(
            vec(ly.attn_norm), mat(ly.wq), mat(ly.wk), mat(ly.wv), mat(ly.wo), vec(ly.bq), vec(ly.bk), vec(ly.bv),
            vec(ly.ffn_norm), mat(ly.w_gate), mat(ly.w_up), mat(ly.w_down)) for ly in w.layers)
        f = np.float32
        self.s = _Scratch(
            x=cuda.device_array(c.dim, f), h=cuda.device_array(c.dim, f), q=cuda.device_array(c.q_dim, f),
            k=cuda.device_array(c.kv_dim, f), v=cuda.device_array(c.kv_dim, f), att=cuda.device_array(c.q_dim, f),
            gate=cuda.device_array(c.ffn_dim, f), up=cuda.device_array(c.ffn_dim, f),
            logits=cuda.device_array(c.vocab_size, f), token=cuda.device_array(1, np.int32),
            attn=attention.make_scratch(c.n_heads, c.head_dim, n_ctx, self.attn_launch))

    def new_cache(self) -> DeviceKVCache:
        return DeviceKVCache(self.cuda, self.c, self.n_ctx)

    def step(self, cache: DeviceKVCache, token: int, pos: int) -> None:
        """Run ``token`` at ``pos``; its K/V go into ``cache``; the logits into ``self.s.logits``."""
        from edgegen.kernels.cuda import attention, matvec, norms
        c, s, mv, th = self.c, self.s, self.mv_launch, self.threads
        cache.check(pos, 1)
        q2, k2, v2, att2 = (a.reshape(-1, c.head_dim) for a in (s.q, s.k, s.v, s.att))
        neox = c.rope_style == RopeStyle.NEOX

        # token embedding: x (dim,)
        matvec.get_rows(self.token_embd, int(token), s.x, th)
        for i, ly in enumerate(self.layers):
            # attention: norm, project, rotate, store K/V, attend, project back onto x
            norms.rmsnorm(s.x, ly.attn_norm, c.rms_eps, s.h, th)
            matvec.matvec(ly.wq, s.h, s.q, ly.bq, launch=mv)
            matvec.matvec(ly.wk, s.h, s.k, ly.bk, launch=mv)
            matvec.matvec(ly.wv, s.h, s.v, ly.bv, launch=mv)
            norms.rope(q2, pos, c.n_rot, c.rope_theta, neox, th)
            norms.rope(k2, pos, c.n_rot, c.rope_theta, neox, th)
            norms.store_kv(k2, v2, pos, cache.k[i], cache.v[i], th)
            attention.attention(q2, cache.k[i], cache.v[i], pos + 1, 1.0 / math.sqrt(c.head_dim), att2, s.attn,
                                self.attn_launch)
            matvec.matvec(ly.wo, s.att, s.x, accumulate=True, launch=mv)
            # feed-forward: norm, SwiGLU, project back onto x
            norms.rmsnorm(s.x, ly.ffn_norm, c.rms_eps, s.h, th)
            matvec.matvec(ly.w_gate, s.h, s.gate, launch=mv)
            matvec.matvec(ly.w_up, s.h, s.up, launch=mv)
            norms.swiglu(s.gate, s.up, s.gate, th)
            matvec.matvec(ly.w_down, s.gate, s.x, accumulate=True, launch=mv)
        norms.rmsnorm(s.x, self.output_norm, c.rms_eps, s.h, th)
        matvec.matvec(self.output, s.h, s.logits, launch=mv)
        cache.length = pos + 1

    def logits(self) -> np.ndarray:
        """The last step's logits, copied to the host: (vocab,) float32."""
        return self.s.logits.copy_to_host()

    def greedy(self) -> int:
        """argmax of the last step's logits, found on the device; only the id is copied back."""
        from edgegen.kernels.cuda import norms
        norms.argmax(self.s.logits, self.s.token, self.threads)
        return int(self.s.token.copy_to_host()[0])
