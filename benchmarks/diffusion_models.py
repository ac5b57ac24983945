"""Random-weight UNets with the shapes of Stable Diffusion's, built once and cached as diffusers folders.

    folder = build_unet(UNET_SHAPES["small"], cache_dir)        # <cache>/unet-small-<key>/unet/...
    onnx = build_unet_onnx(UNET_SHAPES["small"], cache_dir)      # <cache>/unet-small-<key>/onnx-fp32/

Speed depends on shapes, not on trained values: diffusers builds a ``UNet2DConditionModel`` from
the shape with a fixed seed and its default init, saved as float32 safetensors with a
model_index.json naming the one component. A folder appears under its final name only once
complete (written under a temporary name, then renamed); ``key`` hashes the shape and seed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".models"
SEED = 0


@dataclass(frozen=True)
class UNetShape:
    name: str
    source: str                 # where these numbers come from
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    cross_attention_dim: int
    attention_head_dim: int     # diffusers' historical name: the number of heads of UNet2DConditionModel
    latent: int                 # latent side benchmarked (the image is 8x larger through the VAE)
    text_len: int = 77

    def config(self) -> dict:
        n = len(self.block_out_channels)
        return dict(sample_size=self.latent, in_channels=4, out_channels=4,
                    block_out_channels=list(self.block_out_channels), layers_per_block=self.layers_per_block,
                    down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
                    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
                    cross_attention_dim=self.cross_attention_dim, attention_head_dim=self.attention_head_dim)


UNET_SHAPES: dict[str, UNetShape] = {
    # the small SD-shaped UNet
    "small": UNetShape("small", "issue 6: (128, 256, 512), one layer per block", (128, 256, 512), 1, 768, 8, 32),
    # runwayml/stable-diffusion-v1-5 unet/config.json
    "sd15": UNetShape("sd15", "stable-diffusion-v1-5 unet/config.json", (320, 640, 1280, 1280), 2, 768, 8, 64),
}


def folder_for(shape: UNetShape, cache_dir: Path) -> Path:
    key = hashlib.sha256(json.dumps([asdict(shape), SEED]).encode()).hexdigest()[:10]
    return cache_dir / f"unet-{shape.name}-{key}"


def build_unet(shape: UNetShape, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """A diffusers folder holding only ``unet/`` (float32 safetensors) and model_index.json."""
    out = folder_for(shape, cache_dir)
    if (out / "model_index.json").is_file():
        return out
    import diffusers
    import torch
    torch.manual_seed(SEED)
    unet = diffusers.UNet2DConditionModel(**shape.config()).eval()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=cache_dir))
    try:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        (tmp / "model_index.json").write_text(json.dumps(
            {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}, indent=1))
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
