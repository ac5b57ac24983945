"""Train edgegen's bundled image model: a class-conditional pixel DDPM on scikit-learn's digits.

    python tools/train_digits.py --steps 1000 --stop-at 400   # the shipped model: CPU, edgegen/data/digits/
    python tools/train_digits.py --device cuda --steps 4000 --out /tmp/digits

Data: sklearn.datasets.load_digits() (1797 8x8 images, values 0..16), the fixed 80% training split
of ``digit_split`` (the other 20% is only ever used to test the evaluation classifier), upsampled
to 16x16 bilinearly (smooth strokes; a 2x2 mean brings them back to a mildly blurred 8x8, which
tools/eval_digits.py does) and scaled to [-1, 1].
Model: diffusers UNet2DModel, 16x16x1, block_out_channels (32, 64, 64), self-attention at 4x4,
11 class embeddings (0..9 and the null class 10). Labels are dropped to the null class with
probability ``--drop`` so classifier-free guidance works. DDPM epsilon objective, 1000 steps,
squaredcos_cap_v2 betas, batch 64, AdamW (lr 1e-3, 100 warm-up steps, cosine decay over --steps),
EMA of the weights (decay 0.998; the EMA is what is saved).
Saved with DDPMPipeline.save_pretrained (float16 safetensors) with a DDIM scheduler config, plus
class_labels.json and edgegen.json (the CLI's defaults for this model). Seeded: the same command
on the same hardware and torch version writes the same weights.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "edgegen" / "data" / "digits"
SIDE = 16                 # image side the model draws
NULL_CLASS = 10           # class index of "no label" (classifier-free guidance)
SPLIT_SEED = 0            # the fixed train/held-out split shared with tools/eval_digits.py
HELD_OUT = 0.2
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
             "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True, "steps_offset": 0,
             "timestep_spacing": "trailing"}
# the defaults `edgegen image "7"` uses for this model (tools/eval_digits.py measures them)
CLI_DEFAULTS = {"steps": 25, "guidance": 2.0}


def digit_split():
    """(x_train, y_train, x_test, y_test): load_digits' 8x8 images (float 0..16, (N, 8, 8)), 80/20, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    return tuple(train_test_split(d.images.astype(np.float32), d.target, test_size=HELD_OUT,
                                  random_state=SPLIT_SEED, stratify=d.target)[i] for i in (0, 2, 1, 3))


def to_model_space(images8):
    """(N, 8, 8) on 0..16 -> float32 torch (N, 1, 16, 16) in [-1, 1], bilinear."""
    import torch
    x = torch.from_numpy(np.asarray(images8, np.float32))[:, None] / 8.0 - 1.0
    return torch.nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)


def make_unet():
    from diffusers import UNet2DModel
    return UNet2DModel(sample_size=SIDE, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(32, 64, 64), norm_num_groups=8, attention_head_dim=32,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                       num_class_embeds=NULL_CLASS + 1)


def train(args) -> tuple[object, dict]:
    import torch
    from diffusers import DDPMScheduler
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train, _, _ = digit_split()
    data, labels = to_model_space(x_train).to(args.device), torch.from_numpy(y_train).long().to(args.device)
    unet = make_unet().to(args.device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    noise_sched = DDPMScheduler(**{k: SCHEDULER[k] for k in ("num_train_timesteps", "beta_schedule")})
    abar = noise_sched.alphas_cumprod.to(args.device)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    warm = 100
    lr_at = lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start, losses = time.perf_counter(), []
    for step in range(min(args.steps, args.stop_at or args.steps)):
        # every random draw comes from ``gen`` on the CPU, so CPU and CUDA runs see the same batches
        idx = torch.randint(0, len(data), (args.batch,), generator=gen).to(args.device)
        x0, y = data[idx], labels[idx].clone()
        y[(torch.rand(args.batch, generator=gen) < args.drop).to(args.device)] = NULL_CLASS
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(args.device)
        noise = torch.randn(x0.shape, generator=gen).to(args.device)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(unet(xt, t, class_labels=y).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < min(args.steps, args.stop_at or args.steps):
            save(ema, args.out, record(args, step + 1, len(data), losses, time.perf_counter() - start))
        if (step + 1) % 250 == 0 or step == 0:
            print(f"step {step + 1}/{args.steps}  loss {np.mean(losses[-250:]):.4f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return ema, record(args, step + 1, len(data), losses, time.perf_counter() - start)


def record(args, steps: int, images: int, losses: list[float], seconds: float) -> dict:
    """What training.json says about a run (``steps`` done of ``args.steps``)."""
    import torch
    return {"steps": steps, "planned_steps": args.steps, "batch": args.batch, "lr": args.lr,
            "label_drop": args.drop, "ema_decay": args.ema, "seed": args.seed, "train_images": int(images),
            "final_loss": float(np.mean(losses[-250:])), "wall_seconds": round(seconds, 1),
            "hardware": hardware(args.device), "torch": torch.__version__}


def hardware(device: str) -> str:
    import torch
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, " \
           f"{os.cpu_count()} CPUs"


def save(ema, out: Path, record: dict) -> None:
    import torch
    from diffusers import DDIMScheduler, DDPMPipeline
    out.mkdir(parents=True, exist_ok=True)
    unet = copy.deepcopy(ema).to("cpu").to(torch.float16)
    DDPMPipeline(unet=unet, scheduler=DDIMScheduler(**SCHEDULER)).save_pretrained(str(out), safe_serialization=True)
    labels = {"labels": [str(i) for i in range(10)], "null_class": NULL_CLASS}   # the null class has no name: not a prompt
    (out / "class_labels.json").write_text(json.dumps(labels) + "\n", encoding="utf-8")
    (out / "edgegen.json").write_text(json.dumps(CLI_DEFAULTS) + "\n", encoding="utf-8")
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--drop", type=float, default=0.15, help="label dropout to the null class")
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop (and save) after this many steps of the --steps schedule (0: run it all)")
    p.add_argument("--save-every", type=int, default=0, help="also save the EMA weights every N steps (0: at the end only)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = p.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    ema, record = train(args)
    save(ema, args.out, record)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB) in {record['wall_seconds']} s on {record['hardware']}")


if __name__ == "__main__":
    main()
