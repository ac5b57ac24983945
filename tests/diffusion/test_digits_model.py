"""The bundled digits model (edgegen/data/digits, docs/models/digits.md) draws the digits it is asked for.

A classifier trained here on scikit-learn's real 8x8 digits labels 20 generated images (2 per
class, seeds 0 and 1, the model's default 25 DDIM steps and guidance 2, averaged 2x2 down to 8x8
on the data's 0..16 scale); at least AGREEMENT_BOUND of them must be the digit asked for
(measured: 20/20 when this test was written; tools/eval_digits.py measures 100 images).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

AGREEMENT_BOUND = 0.85
SEEDS = (0, 1)
CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def classifier():
    pytest.importorskip("sklearn", reason="the digits test classifies with scikit-learn: pip install scikit-learn")
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC
    digits = load_digits()
    return SVC(gamma="scale", C=10.0).fit(digits.data, digits.target)


@pytest.fixture(scope="module")
def model_dir():
    from edgegen.cli_image import bundled_model
    return bundled_model()


def to_eight(images16: np.ndarray) -> np.ndarray:
    """(N, 1, 16, 16) in [-1, 1] -> (N, 64) on the digits' 0..16 scale, 2x2 means."""
    x = (np.asarray(images16, np.float32)[:, 0] + 1.0) * 8.0
    return np.clip(x.reshape(len(x), 8, 2, 8, 2).mean(axis=(2, 4)), 0.0, 16.0).reshape(len(x), 64)


def test_generated_digits_are_recognised(classifier, model_dir):
    from edgegen.cli_image import model_defaults
    from edgegen.diffusion.pipeline import load_pipeline
    defaults = model_defaults(model_dir)
    pipe = load_pipeline(model_dir, backend="native", threads=2)
    assert pipe.class_names[:10] == tuple(CLASSES) and pipe.null_class == 10
    predicted = []
    for seed in SEEDS:
        last = None
        for last in pipe.steps(CLASSES, steps=defaults["steps"], guidance_scale=defaults["guidance"], seed=seed):
            pass
        images = pipe.decode_float(last.latents)
        assert images.shape == (10, 1, 16, 16)
        predicted.append(classifier.predict(to_eight(images)))
    agreement = float((np.stack(predicted) == np.arange(10)).mean())
    assert agreement >= AGREEMENT_BOUND, f"only {agreement:.0%} of the digits were recognised: {predicted}"


def test_cli_draws_a_digit_with_the_bundled_model(tmp_path, capsys):
    from PIL import Image
    from edgegen import cli
    from edgegen.diffusion.png import read_png_text
    out = tmp_path / "seven.png"
    assert cli.main(["image", "7", "-o", str(out), "--quiet", "--threads", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as im:
        assert im.size == (128, 128) and im.mode == "RGB"   # 16x16, enlarged 8x as the model's edgegen.json asks
    text = read_png_text(out)
    assert (text["model"], text["prompt"], text["steps"], text["guidance"], text["scheduler"], text["size"],
            text["upscale"]) == ("digits", "7", "25", "2", "ddim", "16x16", "8")


def test_upscale_flag_and_its_bounds(tmp_path, capsys):
    from PIL import Image
    from edgegen import cli
    out = tmp_path / "one.png"
    assert cli.main(["image", "1", "-o", str(out), "--quiet", "--steps", "2", "--upscale", "1"]) == 0
    with Image.open(out) as im:
        small = np.asarray(im)
    assert small.shape == (16, 16, 3)
    out3 = tmp_path / "one3.png"
    assert cli.main(["image", "1", "-o", str(out3), "--quiet", "--steps", "2", "--upscale", "3"]) == 0
    with Image.open(out3) as im:
        big = np.asarray(im).astype(np.float32)
    assert big.shape == (48, 48, 3)
    # the enlarged image is the small one resampled: its 3x3 block means stay close to the small pixels
    means = big.reshape(16, 3, 16, 3, 3).mean(axis=(1, 3))
    assert np.abs(means - small).mean() < 12.0
    capsys.readouterr()
    assert cli.main(["image", "1", "-o", str(tmp_path / "x.png"), "--upscale", "0"]) == 1
    assert "--upscale" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_cli_flags_override_the_model_defaults(tmp_path, model_dir):
    from edgegen import cli
    from edgegen.diffusion.png import read_png_text
    out = tmp_path / "three.png"
    assert cli.main(["image", model_dir, "3", "-o", str(out), "--steps", "3", "--guidance", "1", "--quiet"]) == 0
    assert (read_png_text(out)["steps"], read_png_text(out)["guidance"]) == ("3", "1")


def test_malformed_model_defaults_are_named(tmp_path, capsys):
    from edgegen.cli_image import model_defaults
    from edgegen.errors import ModelFileError
    (tmp_path / "edgegen.json").write_text(json.dumps({"steps": "many"}))
    with pytest.raises(ModelFileError, match="edgegen.json.*'steps'"):
        model_defaults(str(tmp_path))
    assert model_defaults(str(tmp_path / "elsewhere")) == {}
