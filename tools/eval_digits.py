"""Evaluate the bundled digits model: do its images look like the digits they were asked for?

    python tools/eval_digits.py                       # edgegen/data/digits, 25 DDIM steps, guidance 2
    python tools/eval_digits.py --steps 10 --guidance 3 --json /tmp/eval.json

1. A classifier (scikit-learn SVC, RBF) is trained on the REAL 8x8 digits of the training split
   (tools/train_digits.digit_split) and its accuracy on the held-out 20% is reported, as is its
   accuracy on those held-out digits sent through the model's 16x16 space and back (the ceiling
   the round trip allows).
2. 100 images (10 per class, seeds 0..9) are drawn with edgegen's native pipeline, averaged 2x2
   down to 8x8 on the data's 0..16 scale, and classified. Agreement = share classified as the
   class asked for (overall and per class). Seconds per image are measured both batched (one call
   per seed draws the ten classes) and one image per call, as `edgegen image` runs.
3. The images are written as a 10x10 grid (row = class, column = seed), each pixel 4x4.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_digits import CLI_DEFAULTS, DEFAULT_OUT, REPO, digit_split, to_model_space  # noqa: E402

CLASSES = [str(i) for i in range(10)]
ZOOM = 4


def classifier():
    """(fitted SVC, held-out accuracy, held-out accuracy after the 16x16 round trip)."""
    from sklearn.svm import SVC
    x_train, y_train, x_test, y_test = digit_split()
    clf = SVC(gamma="scale", C=10.0).fit(x_train.reshape(len(x_train), -1), y_train)
    acc = float((clf.predict(x_test.reshape(len(x_test), -1)) == y_test).mean())
    round_trip = to_eight(to_model_space(x_test).numpy())
    acc_rt = float((clf.predict(round_trip.reshape(len(round_trip), -1)) == y_test).mean())
    return clf, acc, acc_rt


def to_eight(images16: np.ndarray) -> np.ndarray:
    """(N, 1, 16, 16) in [-1, 1] -> (N, 8, 8) on 0..16: 2x2 means, clipped."""
    x = (np.asarray(images16, np.float32)[:, 0] + 1.0) * 8.0
    n = len(x)
    return np.clip(x.reshape(n, 8, 2, 8, 2).mean(axis=(2, 4)), 0.0, 16.0)


def draw(pipe, prompts: list[str], seed: int, steps: int, guidance: float) -> np.ndarray:
    """float32 (B, 1, 16, 16) in about [-1, 1]: the pipeline's samples for ``prompts`` with ``seed``."""
    last = None
    for last in pipe.steps(prompts, steps=steps, guidance_scale=guidance, seed=seed):
        pass
    return pipe.decode_float(last.latents)


def generate(pipe, seeds: int, steps: int, guidance: float) -> tuple[np.ndarray, float]:
    """(images (10, seeds, 1, 16, 16): class x seed, seconds per image), one batched call per seed."""
    start, columns = time.perf_counter(), []
    for seed in range(seeds):
        columns.append(draw(pipe, CLASSES, seed, steps, guidance))
    per_image = (time.perf_counter() - start) / (10 * seeds)
    return np.stack(columns, axis=1), per_image


def single_image_seconds(pipe, steps: int, guidance: float, repeats: int = 5) -> float:
    """Median seconds for one image per call (batch 1, as the CLI draws)."""
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        draw(pipe, [CLASSES[k % 10]], k, steps, guidance)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def write_grid(images: np.ndarray, path: Path) -> None:
    """images (rows, cols, 1, 16, 16) -> a grayscale PNG, 1-pixel dark gutters, each pixel ZOOM x ZOOM."""
    from PIL import Image
    rows, cols, _, h, w = images.shape
    cell = h * ZOOM + 1
    grid = np.zeros((rows * cell + 1, cols * cell + 1), np.uint8) + 40
    unit = np.round(np.clip(images[:, :, 0] / 2 + 0.5, 0, 1) * 255).astype(np.uint8)
    for r in range(rows):
        for c in range(cols):
            big = unit[r, c].repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)
            grid[1 + r * cell:1 + r * cell + h * ZOOM, 1 + c * cell:1 + c * cell + w * ZOOM] = big
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid, mode="L").save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_OUT)
    p.add_argument("--steps", type=int, default=CLI_DEFAULTS["steps"])
    p.add_argument("--guidance", type=float, default=CLI_DEFAULTS["guidance"])
    p.add_argument("--seeds", type=int, default=10, help="images per class (seeds 0..N-1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", type=Path, default=REPO / "docs" / "images" / "digits-grid.png")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    from edgegen.diffusion.pipeline import load_pipeline
    clf, acc, acc_rt = classifier()
    print(f"classifier (SVC on real 8x8 digits): held-out accuracy {acc:.3f}; after the 16x16 round trip {acc_rt:.3f}")
    pipe = load_pipeline(args.model, backend="native", threads=args.threads)
    images, per_image = generate(pipe, args.seeds, args.steps, args.guidance)
    pred = clf.predict(to_eight(images.reshape(-1, 1, 16, 16)).reshape(-1, 64)).reshape(10, args.seeds)
    per_class = (pred == np.arange(10)[:, None]).mean(axis=1)
    single = single_image_seconds(pipe, args.steps, args.guidance)
    print(f"generated {10 * args.seeds} images ({args.steps} steps, {pipe.scheduler_name()}, guidance {args.guidance:g}, "
          f"native backend, {args.threads} threads): agreement {per_class.mean():.3f}")
    print("per class: " + "  ".join(f"{c}:{a:.1f}" for c, a in zip(CLASSES, per_class)))
    print(f"seconds per image: {per_image:.3f} batched by 10, {single:.3f} one per call")
    write_grid(images, args.grid)
    print(f"wrote {args.grid}")
    if args.json:
        args.json.write_text(json.dumps({
            "classifier_held_out_accuracy": acc, "classifier_round_trip_accuracy": acc_rt,
            "steps": args.steps, "guidance": args.guidance, "scheduler": pipe.scheduler_name(),
            "agreement": float(per_class.mean()), "per_class": dict(zip(CLASSES, map(float, per_class))),
            "predicted": pred.tolist(), "seconds_per_image_batched": per_image,
            "seconds_per_image_single": single, "threads": args.threads}, indent=1) + "\n")


if __name__ == "__main__":
    main()
