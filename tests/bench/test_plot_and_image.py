"""--plot writes a valid PNG of the sweep; image models report s/step, s/image and peak RSS per backend."""
from __future__ import annotations

import json

import pytest
from bench.helpers import run_bench

from edgegen.bench.plot import series

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_is_a_png(json_run):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib: pip install 'edgegen[bench]'")
    from PIL import Image
    _, err, png = json_run
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert f"plot written to {png}" in err


def test_plot_series_against_depth_when_there_are_several(json_run):
    rows, _, _ = json_run
    xlabel, lines = series(rows)
    assert xlabel.startswith("depth")
    assert "native tg4 t1" in lines and [x for x, _ in lines["native tg4 t1"]] == [0, 4]
    sweep = [{**r, "n_threads": t} for r in rows if r["n_depth"] == 0 for t in (1, 2)]   # as a -t 1,2 run
    xlabel, lines = series(sweep)
    assert xlabel == "threads" and [x for x, _ in lines["native pp8"]] == [1, 2]


def test_image_model_per_backend(capsys, tiny_sd_folder):
    status, out, err = run_bench(capsys, [str(tiny_sd_folder), "--steps", "2", "--size", "16x16", "-r", "2", "-t", "1",
                                          "--backends", "native,onnxruntime", "-o", "json"])
    assert status == 0, err
    rows = json.loads(out)
    assert [r["backends"] for r in rows] == ["native"]
    assert "backend onnxruntime skipped for sd" in err and "edgegen-onnx.json" in err
    r = rows[0]
    assert (r["steps"], r["width"], r["height"], r["n_threads"]) == (2, 16, 16, 1)
    assert len(r["samples_step_s"]) == 4 and len(r["samples_image_s"]) == 2
    assert r["avg_step_s"] == pytest.approx(sum(r["samples_step_s"]) / 4)
    steps = r["samples_step_s"]
    for i, whole in enumerate(r["samples_image_s"]):        # an image = encode + its steps + decode
        assert whole >= steps[2 * i] + steps[2 * i + 1]
    assert r["peak_rss_mib"] > 0 and r["ratio"] == 1.0 and r["cpu_info"] and r["build_commit"]
