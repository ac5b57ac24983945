"""Tiny random-weight diffusers folders for tests, built locally and deterministically.

    sd = make_tiny_sd(tmp_path / "sd")                       # a StableDiffusionPipeline folder
    ddpm = make_tiny_pixel_unet(tmp_path / "ddpm", class_conditional=True)

``make_tiny_sd`` writes what ``StableDiffusionPipeline.save_pretrained`` writes (model_index.json,
text_encoder/, tokenizer/, unet/, vae/, scheduler/; no safety checker or feature extractor):
a CLIP text encoder (vocab 1000, hidden 32, 2 layers, 4 heads, 77 positions), a CLIP tokenizer
whose vocab.json/merges.txt are written here (the 256 byte symbols, their end-of-word forms, a
few merges, the two CLIP specials), a cross-attention UNet2DConditionModel (32/64 channels,
latent side 8) and an AutoencoderKL (16/32 channels, 4 latent channels, scale factor 2), with a
DDIM scheduler. ``make_tiny_pixel_unet`` writes a DDPMPipeline folder (unet/ + scheduler/) with a
pixel-space UNet2DModel, class-conditional (``num_class_embeds``) when asked.
Weights come from ``torch.manual_seed(seed)``; nothing is cached between calls.
"""
from __future__ import annotations

import json
from pathlib import Path

TEXT_VOCAB = 1000
TEXT_HIDDEN = 32
MAX_LENGTH = 77
NUM_CLASSES = 10
BOS_ID, EOS_ID = 520, 521   # <|startoftext|>, <|endoftext|>: after 256 bytes, 256 end-of-word bytes, 8 merges
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "c a", "ca t</w>", "d o", "do g</w>"]
_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
              "steps_offset": 1, "prediction_type": "epsilon"}


def _byte_symbols() -> list[str]:
    """GPT-2's bytes_to_unicode table: one printable character per byte, in CLIP's vocab order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_clip_tokenizer(folder: Path) -> Path:
    """vocab.json + merges.txt (+ configs) of a tiny CLIP BPE tokenizer; returns ``folder``."""
    from transformers import CLIPTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert tokens.index("<|startoftext|>") == BOS_ID and len(tokens) == EOS_ID + 1
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LENGTH,
                        pad_token="<|endoftext|>")
    tok.save_pretrained(str(folder))
    return folder


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(vocab_size=TEXT_VOCAB, hidden_size=TEXT_HIDDEN, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        max_position_embeddings=MAX_LENGTH, bos_token_id=BOS_ID,
                                        eos_token_id=EOS_ID, pad_token_id=EOS_ID)).eval()


def _tiny_unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), cross_attention_dim=TEXT_HIDDEN,
                                attention_head_dim=8, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()


def _tiny_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         layers_per_block=1, norm_num_groups=8, sample_size=16,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2).eval()


def make_tiny_sd(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny StableDiffusionPipeline folder at ``path`` and return it."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer
    path = Path(path)
    torch.manual_seed(seed)
    text_encoder, unet, vae = _tiny_text_encoder(), _tiny_unet(), _tiny_vae()
    tok_dir = write_clip_tokenizer(path / "_tokenizer_src")
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(path), safe_serialization=True)
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    return path


def make_tiny_pixel_unet(path: str | Path, class_conditional: bool, seed: int = 0) -> Path:
    """Write a tiny DDPMPipeline folder (pixel-space UNet2DModel, 3x8x8) at ``path`` and return it."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    path = Path(path)
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       num_class_embeds=NUM_CLASSES if class_conditional else None).eval()
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="linear", clip_sample=True)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(path), safe_serialization=True)
    return path


def final_step(run):
    """The last DenoiseStep of a pipeline's steps() generator."""
    last = None
    for last in run:
        pass
    return last


def unit_image(pipe, latents):
    """A pipeline's decoded image as diffusers' output_type="np": float (B, H, W, 3) in [0, 1]."""
    import numpy as np
    return np.clip(pipe.decode_float(latents) / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
