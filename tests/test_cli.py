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


def test_generate_sampling_flags_and_json_schema(tmp_path, capsys, monkeypatch):
    schema = tmp_path / "person.json"
    schema.write_text('{"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 99}},'
                      ' "required": ["age"], "additionalProperties": false}')
    args = ["generate", "Person:", "-n", "30", "--temp", "0.9", "--top-k", "40", "--min-p", "0.05",
            "--repeat-penalty", "1.1", "--logit-bias", "5=-inf", "--seed", "4", "--json-schema", str(schema)]
    assert main(args) == 0
    out = capsys.readouterr()
    import json
    value = json.loads(out.out[len("Person:"):])
    assert set(value) == {"age"} and 0 <= value["age"] <= 99
    assert "stop: grammar" in out.err
    model = edgegen.load(default_model())
    expected = "".join(t.text for t in model.generate(
        "Person:", max_tokens=30, temperature=0.9, top_k=40, min_p=0.05, repeat_penalty=1.1, logit_bias={5: -float("inf")},
        seed=4, json_schema=schema.read_text()))
    assert out.out == "Person:" + expected + "\n"


def test_generate_bad_flags_give_one_line_errors(capsys):
    assert main(["generate", PROMPT, "--logit-bias", "seven"]) == 1
    assert "--logit-bias: expected ID=BIAS" in capsys.readouterr().err
    assert main(["generate", PROMPT, "--top-p", "0"]) == 1
    assert "top_p" in capsys.readouterr().err
    assert main(["generate", PROMPT, "--json-schema", '{"type": "nonsense"}']) == 1
    assert "schema" in capsys.readouterr().err


def test_chat_reads_turns_from_stdin(tmp_path):
    import os
    env = dict(os.environ, EDGEGEN_CACHE_DIR=str(tmp_path / "empty-cache"))   # no SmolLM2 there: the bundled model
    r = subprocess.run([sys.executable, "-m", "edgegen", "chat", "-n", "6", "--threads", "1", "--system", "Be brief."],
                       input="Hello\nHow are you?\n", capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "edgegen pull" in r.stderr   # the one-line hint
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    reports = [line for line in r.stderr.splitlines() if line.startswith("[prompt")]
    assert len(reports) == 2 and "(0 cached)" in reports[0] and "(0 cached)" not in reports[1]
