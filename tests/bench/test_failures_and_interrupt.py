"""A backend that cannot run is named in one line and the run goes on; Ctrl-C prints what was measured."""
from __future__ import annotations

import json

import pytest
from bench.helpers import run_bench

from edgegen.bench import spawn


def test_missing_backends_are_named_and_the_rest_runs(capsys, tiny_text_gguf, tmp_path, monkeypatch):
    # llama-cpp-python "not installed": a package of that name that fails to import, first on the child's path
    fake = tmp_path / "fake" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named llama_cpp (simulated)')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    status, out, err = run_bench(capsys, [str(tiny_text_gguf), "-p", "4", "-n", "2", "-r", "1", "-t", "1",
                                          "--backends", "llama.cpp,onnxruntime,native", "-o", "jsonl"])
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["backends"] for r in rows} == {"native"} and len(rows) == 2
    lines = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(lines) == 2, err
    llama, onnx = lines
    assert "backend llama.cpp skipped" in llama and "pip install 'edgegen[llamacpp]'" in llama
    assert "backend onnxruntime skipped" in onnx and "not a folder" in onnx
    # ratios are to the first backend that ran
    assert all(r["ratio"] == pytest.approx(1.0) for r in rows)


def test_no_backend_could_run_is_an_error(capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    status, out, err = run_bench(capsys, [str(bad), "-p", "4", "-n", "0", "-r", "1", "-t", "1"])
    assert status == 1
    assert "backend native skipped for bad.gguf" in err and "no backend could run" in err


def test_ctrl_c_prints_partial_results_and_exits_130(capsys, tiny_text_gguf, monkeypatch):
    real = spawn.run_child
    seen = []

    def interrupted_after_first(job):
        seen.append(job["backend"])
        if len(seen) > 1:                    # the second backend's child: the user presses Ctrl-C
            raise KeyboardInterrupt
        yield from real(job)
    monkeypatch.setattr(spawn, "run_child", interrupted_after_first)
    status, out, err = run_bench(capsys, [str(tiny_text_gguf), "-p", "4", "-n", "2", "-r", "1", "-t", "1",
                                          "--backends", "native,llama.cpp", "-o", "md"])
    assert status == 130
    assert seen == ["native", "llama.cpp"]
    assert "interrupted; 2 result(s) measured so far" in err
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "native" in ln]
    assert [ln.split("|")[6].strip() for ln in rows] == ["pp4", "tg2"]
    assert "llama.cpp" not in "".join(ln for ln in out.splitlines() if ln.startswith("| "))


class CtrlCBar:
    """A progress bar whose second update is the moment the user presses Ctrl-C."""

    def __init__(self, total):
        self.updates = 0

    def update(self, n):
        self.updates += 1
        if self.updates == 2:
            raise KeyboardInterrupt

    def set_description(self, text):
        pass

    clear = close = lambda self: None


def test_collector_ends_a_running_child_on_ctrl_c(tiny_text_gguf, monkeypatch):
    """KeyboardInterrupt in the collector while a child streams: what arrived is kept, the child is ended."""
    monkeypatch.setattr(spawn, "_progress_bar", CtrlCBar)
    job = dict(kind="text", backend="native", model=str(tiny_text_gguf), threads=[1], reps=1, no_warmup=True,
               tests=[(4, 0, 0), (0, 2, 0)], group=0, label="tiny")
    children = []

    def run(j):
        children.append(spawn.run_child(j))
        return children[-1]
    got = spawn.collect([job], run=run, total=2, log=lambda text: None)
    assert got.interrupted and [r["test"] for r in got.results] == ["pp4"]
    assert children[0].gi_frame is None       # closed, so its finally ended the child process
