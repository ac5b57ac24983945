"""Random-weight Stable Diffusion pipelines with the shapes of real ones, built once and cached.

    folder = build_sd(UNET_SHAPES["small"], cache_dir)      # <cache>/sd-small-<key>/{unet,vae,text_encoder,...}

Speed depends on shapes, not on trained values: diffusers and transformers build the UNet, the
VAE and a CLIP text encoder from the shapes with a fixed seed and their default init, saved as a
float32 StableDiffusionPipeline folder (the tests' tiny CLIP tokenizer, an Euler scheduler with
SD 1.5's betas). The text encoder is CLIP ViT-L/14's text tower (SD 1.5's); the VAE is SD's for
"sd15" and a narrower one for "small". A folder appears under its final name only once complete
(written under a temporary name, then renamed); ``key`` hashes the shapes and seed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".models"
SEED = 0
VAE_FACTOR = 8               # image side / latent side: SD's VAE halves the side 3 times


@dataclass(frozen=True)
class UNetShape:
    name: str
    source: str                 # where these numbers come from
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    cross_attention_dim: int
    attention_head_dim: int     # diffusers' historical name: the number of heads of UNet2DConditionModel
    latent: int                 # latent side benchmarked (the image is 8x larger through the VAE)
    vae_channels: tuple[int, ...] = (128, 256, 512, 512)   # SD's AutoencoderKL
    text_layers: int = 12       # CLIP ViT-L/14 text tower: hidden 768, 12 heads, mlp 3072, 77 positions
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
    "small": UNetShape("small", "issue 6: (128, 256, 512), one layer per block", (128, 256, 512), 1, 768, 8, 32,
                       vae_channels=(64, 128, 256, 256)),
    # runwayml/stable-diffusion-v1-5 unet/config.json
    "sd15": UNetShape("sd15", "stable-diffusion-v1-5 unet/config.json", (320, 640, 1280, 1280), 2, 768, 8, 64),
}


def folder_for(shape: UNetShape, cache_dir: Path) -> Path:
    key = hashlib.sha256(json.dumps([asdict(shape), SEED]).encode()).hexdigest()[:10]
    return cache_dir / f"sd-{shape.name}-{key}"


SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "steps_offset": 1, "timestep_spacing": "leading", "prediction_type": "epsilon"}   # SD 1.5's


def _components(shape: UNetShape):
    import diffusers
    import torch
    import transformers
    torch.manual_seed(SEED)
    unet = diffusers.UNet2DConditionModel(**shape.config()).eval()
    n = len(shape.vae_channels)
    vae = diffusers.AutoencoderKL(block_out_channels=shape.vae_channels, layers_per_block=2, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * n,
                                  up_block_types=("UpDecoderBlock2D",) * n, sample_size=shape.latent * 8).eval()
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=shape.cross_attention_dim, intermediate_size=4 * shape.cross_attention_dim,
        num_hidden_layers=shape.text_layers, num_attention_heads=12, max_position_embeddings=shape.text_len,
        hidden_act="quick_gelu")).eval()
    return unet, vae, text


def build_sd(shape: UNetShape, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """A StableDiffusionPipeline folder (float32 safetensors) with ``shape``'s UNet."""
    out = folder_for(shape, cache_dir)
    if (out / "model_index.json").is_file():
        return out
    import diffusers
    import transformers
    sys.path.insert(0, str(TESTS_DIR))
    from diffusion.tiny_sd import write_clip_tokenizer
    unet, vae, text = _components(shape)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=cache_dir))
    try:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(tmp / "tok-src")))
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
            scheduler=diffusers.EulerDiscreteScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        pipe.save_pretrained(str(tmp / "sd"), safe_serialization=True)
        (tmp / "sd").rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
