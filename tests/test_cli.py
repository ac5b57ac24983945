"""The ``edgegen`` command: generate (bundled model and a given file), info, convert."""
from __future__ import annotations

import subprocess
import sys

import edgegen
from edgegen.cli import default_model, main

PROMPT = "Once upon a time"


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    """Run ``python -m edgegen`` outside the repo, so the installed package is what runs."""
    return subprocess.run([sys.executable, "-m", "edgegen", *args], capture_output=True, text=True, cwd=cwd)


def test_generate_with_the_bundled_model_streams_the_api_tokens(tmp_path):
    r = run_cli("generate", PROMPT, "-n", "12", "--threads", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    model = edgegen.load(default_model(), threads=1)
    expected = "".join(t.text for t in model.generate(PROMPT, max_tokens=12))
    assert r.stdout == PROMPT + expected + "\n"
    assert "generated 12 tokens" in r.stderr and "1 threads, cpp kernels" in r.stderr


def test_generate_with_a_given_file_and_numba_kernels(tiny_gguf, capsys):
    path = tiny_gguf("qwen2", "q4_0")
    assert main(["generate", str(path), PROMPT, "-n", "5", "--kernels", "numba", "--threads", "2"]) == 0
    out = capsys.readouterr()
    expected = "".join(t.text for t in edgegen.load(path).generate(PROMPT, max_tokens=5))
    assert out.out == PROMPT + expected + "\n"
    assert "numba kernels" in out.err


def test_info_describes_the_file(tiny_gguf, capsys):
    assert main(["info", str(tiny_gguf("qwen2", "q4_k_m", "bpe"))]) == 0
    out = capsys.readouterr().out
    assert "qwen2: 2 layers, hidden 64, heads 4 (kv 2)" in out
    assert "tensor types" in out and "Q8_0" in out and "F32" in out
    assert "tokenizer     gpt2 (byte-level BPE)" in out
    from edgegen.kernels import _cpp
    assert f"C++ dot products: {_cpp.best_isa()}" in out


def test_convert_writes_a_loadable_file_and_reports_errors(tiny_hf, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    assert main(["convert", str(tiny_hf("llama", "spm")), str(out), "--to", "gguf", "--quant", "q8_0"]) == 0
    report = capsys.readouterr().out
    assert str(out) in report and "rel" in report.lower()
    model = edgegen.load(out)
    assert model.config.n_layers == 2 and model.tokenizer.model == "llama"


def test_generate_rejects_three_positionals(tmp_path, capsys):
    assert main(["generate", "a.gguf", "two", "prompts"]) == 1
    assert "generate takes [MODEL] PROMPT, found 3 arguments" in capsys.readouterr().err
