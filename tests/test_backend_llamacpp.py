"""The llama.cpp backend (edgegen/backends/llamacpp.py): llama.cpp's logits behind edgegen's API.

Checked against llama-cpp-python used directly and against the native backend on the same
tiny converted files: an F32 file with both KV caches in float32 agrees to float32 rounding,
so greedy and seeded sampled tokens are the same in both backends.
"""
from __future__ import annotations

import builtins

import numpy as np
import pytest

import edgegen
from edgegen.backends.llamacpp import open_llama
from edgegen.errors import MissingDependencyError, ModelFileError

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install '.[llamacpp]')")
pytest.importorskip("transformers")

PROMPT = "The keeper was a quiet man who read on calm days"


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def f32_file(request, tiny_gguf):
    return tiny_gguf(request.param, "f32")


def test_logits_are_llama_cpps_own(f32_file):
    model = edgegen.load(f32_file, backend="llama.cpp", threads=2, n_ctx=64)
    ids = model.tokenizer.encode(PROMPT)
    ours = model.logits(ids)
    direct = open_llama(f32_file, n_ctx=64, logits_all=True, verbose=False, type_k=0, type_v=0)
    direct.eval(ids)
    np.testing.assert_allclose(ours, np.array(direct.scores[:len(ids)]), rtol=0, atol=1e-5 * np.abs(ours).max())
    last = model.new_session().eval(ids)             # the decode path: last row only
    np.testing.assert_allclose(last, ours[-1], rtol=0, atol=1e-5 * np.abs(ours).max())


def test_greedy_and_seeded_tokens_equal_the_native_backend(f32_file):
    theirs = edgegen.load(f32_file, backend="llama.cpp", threads=2, n_ctx=128)
    ours = edgegen.load(f32_file, threads=2, n_ctx=128)
    np.testing.assert_allclose(theirs.logits(ours.tokenizer.encode(PROMPT)), ours.logits(ours.tokenizer.encode(PROMPT)),
                               rtol=0, atol=2e-5 * np.abs(ours.logits(ours.tokenizer.encode(PROMPT))).max())
    for options in (dict(), dict(temperature=0.9, top_k=20, min_p=0.02, seed=5)):
        a = [t.id for t in theirs.generate(PROMPT, max_tokens=24, ignore_eos=True, **options)]
        b = [t.id for t in ours.generate(PROMPT, max_tokens=24, ignore_eos=True, **options)]
        assert a == b, options


def test_prompt_cache_reuse_and_chat(f32_file):
    model = edgegen.load(f32_file, backend="llama.cpp", threads=1, n_ctx=256)
    first = model.generate(PROMPT, max_tokens=4, ignore_eos=True)
    list(first)
    second = model.generate(PROMPT + " and climbed", max_tokens=6, ignore_eos=True)
    reused = [t.id for t in second]
    assert second.timing.reused_tokens > 5
    fresh = [t.id for t in model.generate(PROMPT + " and climbed", max_tokens=6, ignore_eos=True,
                                          session=model.new_session())]
    assert reused == fresh
    reply = model.chat([{"role": "user", "content": "hello"}], max_tokens=3, ignore_eos=True)
    assert len(list(reply)) == 3


def test_bad_file_is_refused_before_llama_cpp_sees_it(tmp_path, tiny_gguf):
    good = tiny_gguf("llama", "q8_0").read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="cut.gguf"):
        edgegen.load(bad, backend="llama.cpp")


def test_missing_llama_cpp_python_names_the_install_command(monkeypatch, tiny_gguf):
    real_import = builtins.__import__

    def no_llama_cpp(name, *args, **kwargs):
        if name == "llama_cpp" or name.startswith("llama_cpp."):
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_llama_cpp)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgegen\[llamacpp\]'"):
        edgegen.load(tiny_gguf("llama", "f32"), backend="llama.cpp")


def test_cli_generate_with_the_llama_cpp_backend(f32_file, capsys):
    from edgegen.cli import main
    assert main(["generate", str(f32_file), PROMPT, "-n", "6", "--backend", "llama.cpp", "--temp", "0.8",
                 "--seed", "2", "--threads", "1"]) == 0
    out = capsys.readouterr()
    model = edgegen.load(f32_file, backend="llama.cpp", threads=1)
    assert out.out == PROMPT + "".join(t.text for t in model.generate(PROMPT, max_tokens=6, temperature=0.8, seed=2)) + "\n"
    assert "llama.cpp backend" in out.err
    assert main(["generate", str(f32_file), PROMPT, "--backend", "llama.cpp", "--kernels", "numba"]) == 1
    assert "--kernels applies to the native backend only" in capsys.readouterr().err
