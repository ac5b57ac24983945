"""Bad input gets a typed error naming the file/tensor/field, and the CLI one line and a non-zero exit."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType

import edgegen
from edgegen.cli import main
from gguf_edit import rewrite_gguf


@pytest.fixture
def good(tiny_gguf):
    return tiny_gguf("llama", "q8_0")


def test_missing_file(tmp_path):
    with pytest.raises(edgegen.ModelFileError, match="no such model file"):
        edgegen.load(tmp_path / "nope.gguf")


def test_wrong_magic(tmp_path, good):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + good.read_bytes()[4:])
    with pytest.raises(edgegen.ModelFileError, match=r"bad.gguf.*expected magic b'GGUF', found b'GGML'"):
        edgegen.load(bad)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.999])
def test_truncated_file(tmp_path, good, keep):
    data = good.read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(edgegen.ModelFileError, match="cut.gguf.*(truncated|malformed)"):
        edgegen.load(bad)


def test_unknown_architecture(tmp_path, good):
    bad = rewrite_gguf(good, tmp_path / "arch.gguf", arch="mamba")
    with pytest.raises(edgegen.UnsupportedModelError, match="arch.gguf.*architecture 'mamba'.*llama, qwen2"):
        edgegen.load(bad)


def test_unsupported_tensor_type(tmp_path, good):
    def to_q5_0(name, data, qtype):
        if name == "blk.0.attn_q.weight":  # same byte size per 32 values is not needed: Q5_0 bytes made up
            rows = data.shape[0]
            return np.zeros((rows, data.shape[1] // 34 * 22), dtype=np.uint8), GGMLQuantizationType.Q5_0
        return data, qtype
    bad = rewrite_gguf(good, tmp_path / "q5.gguf", edit_tensor=to_q5_0)
    with pytest.raises(edgegen.UnsupportedModelError, match="q5.gguf.*'blk.0.attn_q.weight'.*Q5_0"):
        edgegen.load(bad)


def test_missing_tensor(tmp_path, good):
    bad = rewrite_gguf(good, tmp_path / "miss.gguf", drop_tensors=("blk.1.ffn_up.weight",))
    with pytest.raises(edgegen.ModelFileError, match="miss.gguf.*missing tensor 'blk.1.ffn_up.weight'"):
        edgegen.load(bad)


def test_wrong_shape(tmp_path, good):
    def shrink(name, data, qtype):
        return (data[:-1], qtype) if name == "blk.0.attn_k.weight" else (data, qtype)
    bad = rewrite_gguf(good, tmp_path / "shape.gguf", edit_tensor=shrink)
    with pytest.raises(edgegen.ModelFileError, match=r"shape.gguf.*'blk.0.attn_k.weight' has shape \(\d+, \d+\), expected"):
        edgegen.load(bad)


def test_missing_metadata(tmp_path, good):
    bad = rewrite_gguf(good, tmp_path / "meta.gguf", drop_meta=("llama.block_count",))
    with pytest.raises(edgegen.ModelFileError, match="meta.gguf.*missing metadata key 'llama.block_count'"):
        edgegen.load(bad)


def test_prompt_longer_than_context(good):
    model = edgegen.load(good, n_ctx=16)
    with pytest.raises(edgegen.ContextLengthError, match="prompt of 40 tokens does not fit in a context of 16"):
        list(model.generate(list(range(1, 41)), max_tokens=4))
    with pytest.raises(edgegen.ContextLengthError):
        model.logits(list(range(1, 41)))


def test_generation_stops_when_context_is_full(good):
    model = edgegen.load(good, n_ctx=16)
    toks = list(model.generate(list(range(1, 11)), max_tokens=100, ignore_eos=True))
    # 10 prompt positions + 6 generated tokens fed back fill all 16; the 7th is sampled from the last logits
    assert len(toks) == 7
    assert model.new_session().n_ctx == 16


def test_bad_token_id_and_options(good):
    model = edgegen.load(good)
    with pytest.raises(edgegen.UsageError, match="token id 99999 is outside the vocabulary"):
        model.logits([1, 99999])
    with pytest.raises(edgegen.UsageError, match="threads must be >= 1"):
        edgegen.load(good, threads=0)
    with pytest.raises(edgegen.UsageError, match="backend: expected one of native"):
        edgegen.load(good, backend="tensorrt")
    with pytest.raises(edgegen.UsageError, match="kernels: expected one of cpp, .*numba, ref"):
        edgegen.load(good, kernels="cuda")


def test_cli_prints_one_line_and_fails(tmp_path, capsys, good):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(good.read_bytes()[:1000])
    assert main(["generate", str(bad), "hi"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgegen: error:") and "cut.gguf" in err[0]


# Subprocesses run outside the repo so that they import the installed package, not the source tree.
def test_cli_bad_flag_exits_nonzero(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgegen", "generate", "--threads", "two", "m.gguf", "hi"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "invalid int value: 'two'" in r.stderr


def test_import_edgegen_loads_no_framework(tmp_path):
    code = ("import sys, edgegen, edgegen.backends.native, edgegen.cli; "
            "bad = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
