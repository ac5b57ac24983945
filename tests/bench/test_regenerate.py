"""benchmarks/regenerate.py on tiny inputs: the bench tables land between the markers, the rest stays."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from bench.helpers import STUB_GBPS

from edgegen.bench import bandwidth

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "regenerate.py"


@pytest.fixture(scope="module")
def regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replace_section_keeps_the_rest(regenerate, tmp_path):
    doc = tmp_path / "R.md"
    doc.write_text(f"# Title\n\nhand-written\n\n{regenerate.BEGIN}\nold\n{regenerate.END}\n\ntail\n")
    regenerate.replace_section(doc, regenerate.section("cmd", [("T", "| a |")]))
    text = doc.read_text()
    assert text.startswith("# Title\n\nhand-written\n\n" + regenerate.BEGIN)
    assert "old" not in text and "### T\n\n| a |" in text and text.endswith(regenerate.END + "\n\ntail\n")
    assert [p.name for p in tmp_path.iterdir()] == ["R.md"]
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="marker lines"):
        regenerate.replace_section(doc, "x")


def test_main_on_tiny_models(regenerate, tmp_path, tiny_text_gguf, tiny_sd_folder, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / bandwidth.CACHE_FILE).write_text(json.dumps({bandwidth.cache_key(1): {"gbps": STUB_GBPS}}))
    monkeypatch.setenv(bandwidth.CACHE_ENV, str(cache))           # the bench child processes read it
    doc = tmp_path / "RESULTS.md"
    doc.write_text(f"intro\n{regenerate.BEGIN}\n{regenerate.END}\n")
    status = regenerate.main(["--gguf", str(tiny_text_gguf), "--sd", str(tiny_sd_folder), "-t", "1", "-p", "4",
                              "-n", "2", "-pg", "4,2", "-r", "1", "--text-backends", "native", "--steps", "1",
                              "--image-threads", "1", "--image-backends", "native", "--results", str(doc)])
    assert status == 0
    text = doc.read_text()
    assert text.startswith("intro\n" + regenerate.BEGIN)
    for expected in ("CPU:", "| pp4 |", "| tg2 |", "| pp4+tg2 |", "1 steps", "### Image", "--gguf"):
        assert expected in text, expected
