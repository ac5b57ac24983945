"""Perplexity (edgegen/perplexity.py) on tiny GGUFs, against two independent computations on the
same windows: transformers' logits of the source HF checkpoint, and llama.cpp's logits through
llama-cpp-python (logits_all=True). Text: tests/data/apache-2.0.txt."""
from __future__ import annotations

import math

import numpy as np
import pytest

import edgegen
from edgegen.backends.llamacpp import open_llama
from edgegen.cli import main
from edgegen.errors import UsageError
from edgegen.perplexity import perplexity, window_nll, windows

from conftest import DATA

TEXT_FILE = DATA / "apache-2.0.txt"
CTX = 64
N_WINDOWS = 8
N_TOKENS = N_WINDOWS * CTX + 17     # and a tail that is dropped
TRANSFORMERS_RTOL = 1e-4            # PyTorch float32 vs native kernels (measured ~1e-6)
LLAMA_CPP_RTOL = 1e-3               # llama.cpp float32 vs native kernels (measured ~1e-6)
GGML_TYPE_F32 = 0                   # llama.cpp's KV cache in float32, as edgegen's


def reference_ppl(window_logits: list[np.ndarray], wins: list[np.ndarray]) -> tuple[float, float]:
    """(ppl, its standard error) written from llama-perplexity's description, in float64."""
    nll = []
    for logits, win in zip(window_logits, wins):
        first = CTX // 2
        for pos in range(first, CTX - 1):
            row = logits[pos].astype(np.float64)
            nll.append(math.log(np.exp(row - row.max()).sum()) + row.max() - row[win[pos + 1]])
    nll = np.array(nll)
    ppl = math.exp(nll.mean())
    return ppl, ppl * math.sqrt(((nll ** 2).mean() - nll.mean() ** 2) / (len(nll) - 1))


@pytest.fixture(scope="module")
def text():
    return TEXT_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def measured(tiny_gguf, text):
    """(model, ids, windows, edgegen's result) of the tiny llama with ``tokenizer``, computed once."""
    made = {}

    def get(tokenizer: str):
        if tokenizer not in made:
            model = edgegen.load(tiny_gguf("llama", "f32", tokenizer), threads=2, n_ctx=CTX)
            ids = model.tokenizer.encode(text)[:N_TOKENS]
            assert len(ids) == N_TOKENS
            bos = model.tokenizer.bos_id if model.tokenizer.add_bos else None
            made[tokenizer] = model, ids, windows(ids, CTX, bos), perplexity(model, ids, CTX)
        return made[tokenizer]
    return get


def test_windows_follow_llama_perplexity():
    ids = list(range(10, 10 + 2 * 8 + 3))
    wins = windows(ids, 8, bos_id=1)
    assert [w.tolist() for w in wins] == [[1, *range(11, 18)], [1, *range(19, 26)]]
    assert [w.tolist() for w in windows(ids, 8, None)][1] == list(range(18, 26))
    logits = np.zeros((8, 40))
    assert len(window_nll(logits, wins[0])) == 8 - 1 - 4
    np.testing.assert_allclose(window_nll(logits, wins[0]), math.log(40))


@pytest.mark.parametrize("tokenizer", ["bpe", "spm"])   # spm adds BOS: every window starts with it
def test_perplexity_equals_transformers(tiny_hf, measured, tokenizer):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model, ids, wins, got = measured(tokenizer)
    assert (tokenizer == "spm") == all(w[0] == model.tokenizer.bos_id for w in wins)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf("llama", tokenizer), torch_dtype=torch.float32)
    with torch.no_grad():
        logits = hf.eval()(torch.tensor(np.stack(wins))).logits.numpy()
    want_ppl, want_err = reference_ppl(list(logits), wins)
    assert got.n_windows == N_WINDOWS and got.n_scored == N_WINDOWS * (CTX - 1 - CTX // 2)
    assert got.ppl == pytest.approx(want_ppl, rel=TRANSFORMERS_RTOL)
    assert got.stderr == pytest.approx(want_err, rel=TRANSFORMERS_RTOL)


def test_perplexity_agrees_with_llama_cpp(tiny_gguf, measured):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    _, _, wins, got = measured("bpe")
    llm = open_llama(tiny_gguf("llama", "f32", "bpe"), n_ctx=CTX, n_batch=CTX, n_threads=2,
                          logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False,
                          verbose=False)
    logits = []
    for win in wins:
        llm.reset()
        llm.eval(win.tolist())
        logits.append(np.array(llm.scores[:CTX], dtype=np.float32))
    want_ppl, want_err = reference_ppl(logits, wins)
    assert got.ppl == pytest.approx(want_ppl, rel=LLAMA_CPP_RTOL)
    assert got.stderr == pytest.approx(want_err, rel=LLAMA_CPP_RTOL)


def test_cli_prints_the_function_result(tiny_gguf, tmp_path, measured, capsys):
    model, ids, _, _ = measured("bpe")
    short = tmp_path / "short.txt"
    short.write_text(model.tokenizer.decode(ids[:3 * CTX]), encoding="utf-8")   # 3 windows
    want = perplexity(model, model.tokenizer.encode(short.read_text(encoding="utf-8")), CTX)
    path = str(tiny_gguf("llama", "f32", "bpe"))
    assert main(["perplexity", path, "--file", str(short), "--ctx", str(CTX), "--threads", "2"]) == 0
    assert capsys.readouterr().out.strip() == want.summary()


def test_too_short_text_is_a_usage_error(tiny_gguf, tmp_path, capsys):
    model = edgegen.load(tiny_gguf("llama", "f32", "bpe"), threads=2, n_ctx=CTX)
    with pytest.raises(UsageError, match="at least ctx = 64 tokens"):
        perplexity(model, [1, 2, 3], CTX)
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    assert main(["perplexity", str(tiny_gguf("llama", "f32", "bpe")), "--file", str(short), "--ctx", "64"]) == 1
    assert "at least ctx = 64 tokens" in capsys.readouterr().err
