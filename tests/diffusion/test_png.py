"""PNG output (edgegen/diffusion/png.py): pixels and text chunks round-trip, the bytes depend only on
the image and metadata, and the write is atomic."""
from __future__ import annotations

import os

import numpy as np
import pytest

from edgegen.errors import UsageError

pytest.importorskip("PIL")
from edgegen.diffusion.png import read_png_text, save_png  # noqa: E402

META = {"prompt": "a cat, oil painting", "negative_prompt": "blurry", "seed": "42", "steps": "20",
        "scheduler": "euler_a", "guidance": "7.5", "size": "5x7", "model": "sd15", "backend": "native",
        "software": "edgegen 0.1.0"}


def _image(seed=0, h=7, w=5):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pixels_and_metadata_round_trip(tmp_path):
    from PIL import Image
    meta = dict(META, prompt="ein Kätzchen, 猫")   # not Latin-1: an iTXt chunk
    path = save_png(_image(), tmp_path / "a.png", meta)
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), _image())
    assert read_png_text(path) == meta


def test_same_image_and_metadata_give_identical_bytes(tmp_path):
    a = save_png(_image(1), tmp_path / "a.png", META).read_bytes()
    b = save_png(_image(1), tmp_path / "b.png", dict(reversed(list(META.items())))).read_bytes()
    c = save_png(_image(2), tmp_path / "c.png", META).read_bytes()
    assert a == b and a != c


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    save_png(_image(), path, META)
    assert sorted(os.listdir(tmp_path)) == ["out.png"] and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_bad_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="uint8"):
        save_png(_image().astype(np.float32), tmp_path / "x.png", {})
    with pytest.raises(UsageError, match="does not exist"):
        save_png(_image(), tmp_path / "missing" / "x.png", {})
    assert not (tmp_path / "x.png").exists()
