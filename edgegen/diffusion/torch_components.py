"""Reference components over diffusers/transformers PyTorch modules (the PyTorch peer in tests
and benchmarks), with the NumPy-in, NumPy-out protocol of components.py.

    components = load_torch_components("sd-folder", threads=4)
    states = components["text_encoder"](ids)          # (B, 77) int64 -> (B, 77, D) float32
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgegen.diffusion.folder import read_folder
from edgegen.errors import MissingDependencyError

INSTALL = "pip install 'edgegen[test]' (torch, diffusers and transformers)"


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"the torch backend needs PyTorch: {INSTALL}") from None
    return torch


def _to_torch(x: np.ndarray):
    return _torch().from_numpy(np.ascontiguousarray(x))


class TorchTextEncoder:
    """transformers' CLIPTextModel: ids -> last_hidden_state (after the final layer norm)."""

    def __init__(self, model):
        self.model = model.eval()
        self.hidden_size = model.config.hidden_size
        self.max_length = model.config.max_position_embeddings

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        with _torch().no_grad():
            return self.model(_to_torch(ids.astype(np.int64)))[0].float().numpy()


class TorchUNet:
    """diffusers' UNet2DConditionModel (text states) or UNet2DModel (class labels or nothing)."""

    def __init__(self, model):
        c = model.config
        self.model = model.eval()
        self.in_channels, self.out_channels, self.sample_size = c.in_channels, c.out_channels, c.sample_size
        self.cross_attention_dim = getattr(c, "cross_attention_dim", None)
        self.num_class_embeds = getattr(c, "num_class_embeds", None)
        self.conditional = type(model).__name__ == "UNet2DConditionModel"

    def __call__(self, x: np.ndarray, t, cond) -> np.ndarray:
        torch = _torch()
        # as diffusers' pipelines pass it: an integer timestep stays integer, a fractional one float32
        t = int(t) if float(t).is_integer() else float(t)
        with torch.no_grad():
            xt = _to_torch(x.astype(np.float32))
            if self.conditional:
                out = self.model(xt, t, encoder_hidden_states=_to_torch(np.asarray(cond, np.float32))).sample
            else:
                labels = None if cond is None else _to_torch(np.asarray(cond, np.int64))
                out = self.model(xt, t, class_labels=labels).sample
        return out.float().numpy()


class TorchVaeDecoder:
    """AutoencoderKL's post_quant_conv + decoder."""

    def __init__(self, vae):
        self.vae = vae.eval()
        self.latent_channels = vae.config.latent_channels
        self.scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        with _torch().no_grad():
            h = _to_torch(z.astype(np.float32))
            if self.vae.post_quant_conv is not None:
                h = self.vae.post_quant_conv(h)
            return self.vae.decoder(h).float().numpy()


class TorchVaeEncoder:
    """AutoencoderKL's encoder + quant_conv -> moments (mean, logvar on channels)."""

    def __init__(self, vae):
        self.vae = vae.eval()
        self.latent_channels = vae.config.latent_channels
        self.scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with _torch().no_grad():
            h = self.vae.encoder(_to_torch(image.astype(np.float32)))
            if self.vae.quant_conv is not None:
                h = self.vae.quant_conv(h)
            return h.float().numpy()


def load_torch_components(folder, threads: int | None = None) -> dict:
    """{"unet", and where the folder has them "text_encoder", "vae_decoder", "vae_encoder"} over PyTorch."""
    torch = _torch()
    try:
        import diffusers
    except ImportError:
        raise MissingDependencyError(f"the torch backend needs diffusers: {INSTALL}") from None
    if threads is not None:
        torch.set_num_threads(threads)
    f = read_folder(folder)
    path = Path(folder)
    unet_cls = getattr(diffusers, f.classes["unet"])
    out = {"unet": TorchUNet(unet_cls.from_pretrained(path / "unet"))}
    if "vae" in f.classes:
        vae = diffusers.AutoencoderKL.from_pretrained(path / "vae")
        out["vae_decoder"], out["vae_encoder"] = TorchVaeDecoder(vae), TorchVaeEncoder(vae)
    if "text_encoder" in f.classes:
        try:
            from transformers import CLIPTextModel
        except ImportError:
            raise MissingDependencyError(f"the torch backend needs transformers: {INSTALL}") from None
        out["text_encoder"] = TorchTextEncoder(CLIPTextModel.from_pretrained(path / "text_encoder"))
    return out
