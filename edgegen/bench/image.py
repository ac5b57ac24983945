"""The timed image test: seconds per denoising step and per image, per backend (inside the child).

Each repetition draws one image: text encoding, ``steps`` denoising steps (the UNet, on a batch of
two with classifier-free guidance, and the guided scheduler update), the VAE decode. Reported:
seconds per step (mean ± sd over every step of every timed image), seconds per image (encode +
steps + decode) and the process's peak resident set. Excluded: loading the pipeline, one
warm-up image (dropped), PNG encoding.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from edgegen.bench.text import peak_rss_mib, stats

IMAGE_BACKENDS = ("native", "onnxruntime", "torch")
PROMPT = "a photo of a cat"
GUIDANCE = 7.5
SEED = 0
EXCLUDED = "excluded: pipeline load, the warm-up image, PNG encoding; an image = text encoding + steps + VAE decode"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def draw(pipe, steps: int, width: int | None, height: int | None) -> tuple[list[float], float, float, float]:
    """One image: (seconds of each step, of the whole image, of the text encoding, of the VAE decode)."""
    t0 = time.perf_counter()
    run = pipe.steps(PROMPT, negative_prompt="", steps=steps, guidance_scale=GUIDANCE, seed=SEED,
                     width=width, height=height)          # encodes the prompts, returns the step generator
    times, last, t1 = [], None, time.perf_counter()
    encode = t1 - t0
    for last in run:
        t2 = time.perf_counter()
        times.append(t2 - t1)
        t1 = t2
    pipe.decode(last.latents)
    t3 = time.perf_counter()
    return times, t3 - t0, encode, t3 - t1


def measure_image(job: dict) -> Iterator[dict]:
    """One backend over every thread count of ``job``: progress per image, then a result per thread count."""
    from edgegen.diffusion.pipeline import load_pipeline
    width, height = job.get("size") or (None, None)
    for threads in job["threads"]:
        t0 = time.perf_counter()
        pipe = load_pipeline(job["model"], backend=job["backend"], threads=threads)
        load_s = time.perf_counter() - t0
        step_s, image_s, encode_s, decode_s = [], [], [], []
        for rep in range(job["reps"] + (0 if job.get("no_warmup") else 1)):
            steps, whole, encode, decode = draw(pipe, job["steps"], width, height)
            if rep or job.get("no_warmup"):
                step_s += steps
                image_s.append(whole)
                encode_s.append(encode)
                decode_s.append(decode)
                yield {"progress": 1}
        (avg_step, sd_step), (avg_image, sd_image) = stats(step_s), stats(image_s)
        w, h = pipe._size(width, height)
        yield {"result": {
            "backends": job["backend"], "model_filename": Path(job["model"]).name,
            "model_type": f"{pipe.unet.__class__.__name__}", "model_size": folder_bytes(job["model"]),
            "n_threads": threads, "steps": job["steps"], "width": w, "height": h, "test": f"{w}x{h} {job['steps']} steps",
            "test_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "avg_step_s": avg_step, "stddev_step_s": sd_step, "samples_step_s": step_s,
            "avg_image_s": avg_image, "stddev_image_s": sd_image, "samples_image_s": image_s,
            "encode_s": stats(encode_s)[0], "decode_s": stats(decode_s)[0], "load_s": load_s,
            "peak_rss_mib": peak_rss_mib()}}
