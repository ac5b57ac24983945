"""What a diffusion pipeline calls: four components with NumPy in and out, whatever runs them.

Every backend (edgegen's kernels in ``native``, onnxruntime in ``onnx_components``, PyTorch in
``torch_components`` for reference) gives the pipeline objects with these call signatures, so
the pipeline (pipeline.py) and the denoising loop (loop.py) never know which one runs.
Images and latents cross this boundary as float32 NCHW arrays, as diffusers lays them out.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    """CLIP text encoder: token ids -> the last hidden state after the final layer norm
    (what Stable Diffusion's UNet cross-attends to)."""
    hidden_size: int       # D
    max_length: int        # L: the position embeddings' length (77 for CLIP)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """ids int64 (B, L) -> float32 (B, L, D)."""


class Denoiser(Protocol):
    """A UNet: noisy sample at timestep t -> model output (epsilon, v or sample, per the
    scheduler config's prediction_type)."""
    in_channels: int
    out_channels: int
    sample_size: int       # the latent (or pixel) side the model was trained at
    cross_attention_dim: int | None   # D of the text states it attends to; None for UNet2DModel
    num_class_embeds: int | None      # classes of a class-conditional UNet2DModel; None otherwise

    def __call__(self, x: np.ndarray, t: float, cond: np.ndarray | None) -> np.ndarray:
        """x float32 (B, C, H, W); t the scheduler's timestep (one for the batch);
        cond: text states float32 (B, L, D), or class labels int64 (B,), or None.
        Returns float32 (B, out_channels, H, W)."""


class VaeDecoder(Protocol):
    """AutoencoderKL's post_quant_conv + decoder: latents (already divided by the VAE's
    scaling_factor) -> image in [-1, 1]."""
    latent_channels: int
    scale_factor: int      # image side / latent side (2 ** (len(block_out_channels) - 1))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """z float32 (B, latent_channels, h, w) -> float32 (B, 3, h * scale_factor, w * scale_factor)."""


class VaeEncoder(Protocol):
    """AutoencoderKL's encoder + quant_conv: image in [-1, 1] -> the latent distribution's
    moments (mean and log-variance concatenated on channels; not yet scaled)."""
    latent_channels: int
    scale_factor: int

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """image float32 (B, 3, H, W) -> float32 (B, 2 * latent_channels, H / scale_factor, W / scale_factor)."""
