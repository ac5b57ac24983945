"""The bundled default text model (edgegen/data/kjv-llama-q8_0.gguf, docs/models/text.md): it is the
CLI's default, every backend that reads it gives the same predictions, and it predicts English
it never saw (held-out KJV chapters shipped in tests/data) far better than a unigram model.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import edgegen
from edgegen.cli import BUNDLED_TEXT_MODEL, default_model, main

HELD_OUT = Path(__file__).parent / "data" / "kjv-held-out.txt"   # 3 chapters the model was not trained on
EOT = "<|endoftext|>"
WINDOW = 256                                                     # the model's context


@pytest.fixture(scope="module")
def model():
    return edgegen.load(default_model(), threads=2)


@pytest.fixture(scope="module")
def held_out_ids(model) -> np.ndarray:
    eot = model.tokenizer.encode(EOT, add_bos=False, parse_special=True)
    assert len(eot) == 1, "the bundled tokenizer lost its <|endoftext|> token"
    ids = []
    for chapter in HELD_OUT.read_text(encoding="utf-8").split("\n%\n"):
        ids += eot + model.tokenizer.encode(chapter.strip(), add_bos=False)
    return np.asarray(ids + eot, dtype=np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def window_logits(model, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced log-probabilities over non-overlapping windows, and the tokens they predict."""
    logp, targets = [], []
    for start in range(0, len(ids) - 1, WINDOW):
        window = ids[start:start + WINDOW]
        if len(window) < 2:
            break
        logp.append(log_softmax(model.logits(window.tolist()))[:-1])
        targets.append(window[1:])
    return np.concatenate(logp), np.concatenate(targets)


def test_the_cli_default_is_the_bundled_trained_model():
    path = Path(default_model())
    assert path.name == BUNDLED_TEXT_MODEL and path.is_file()
    assert path.stat().st_size < 16 * 2**20


def test_held_out_perplexity_is_far_below_unigram(model, held_out_ids):
    logp, targets = window_logits(model, held_out_ids)
    model_ppl = float(np.exp(-logp[np.arange(len(targets)), targets].mean()))
    # a unigram model fitted on these very chapters (an optimistic baseline: it has seen the answers)
    counts = np.bincount(targets, minlength=logp.shape[1]).astype(np.float64) + 1.0
    unigram_ppl = float(np.exp(-np.log(counts[targets] / counts.sum()).mean()))
    assert len(targets) > 1000
    assert model_ppl < unigram_ppl / 5, f"held-out perplexity {model_ppl:.1f} vs unigram {unigram_ppl:.1f}"


@pytest.mark.parametrize("kernels", ["numba", "ref", "cpp-float"])
def test_every_native_kernel_set_predicts_the_same(model, held_out_ids, kernels):
    other = edgegen.load(default_model(), threads=2, kernels=kernels)
    ids = held_out_ids[:WINDOW]
    ours, theirs = model.logits(ids.tolist()), other.logits(ids.tolist())
    agree = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    scale = np.abs(theirs).max()
    assert agree >= 0.97 and np.abs(ours - theirs).max() < 0.05 * scale, (agree, np.abs(ours - theirs).max(), scale)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
def test_llama_cpp_reads_it_and_agrees(model, held_out_ids):
    peer = edgegen.load(default_model(), backend="llama.cpp", threads=2)
    ids = held_out_ids[:WINDOW]
    agree = float((model.logits(ids.tolist()).argmax(-1) == peer.logits(ids.tolist()).argmax(-1)).mean())
    assert agree >= 0.97, f"top-1 agreement with llama.cpp {agree:.1%}"
    prompt = "And the king said unto"
    ours = [t.id for t in model.generate(prompt, max_tokens=24)]
    theirs = [t.id for t in peer.generate(prompt, max_tokens=24)]
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(ours))
    assert same >= 12, f"greedy tokens part at {same}: {ours} vs {theirs}"


def test_generate_with_no_model_writes_english(capsys):
    assert main(["generate", "In the beginning", "-n", "24", "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("In the beginning")
    words = text.split()
    assert len(words) >= 10
    wordlike = sum(w.strip(".,;:!?'()").isalpha() for w in words)
    assert wordlike >= 0.8 * len(words), text


@pytest.mark.skipif(importlib.util.find_spec("optimum") is None or importlib.util.find_spec("onnxruntime") is None,
                    reason="the ONNX export needs the export-onnx extra")
def test_onnxruntime_runs_its_onnx_export_and_agrees(model, held_out_ids, tmp_path):
    from edgegen.converters.gguf_to_hf import convert_gguf_to_onnx
    out = tmp_path / "kjv-onnx"
    convert_gguf_to_onnx(default_model(), out, quant="fp32", progress=False)
    peer = edgegen.load(out, backend="onnxruntime", threads=2)
    ids = held_out_ids[:WINDOW]
    agree = float((model.logits(ids.tolist()).argmax(-1) == peer.logits(ids.tolist()).argmax(-1)).mean())
    assert agree >= 0.97, f"top-1 agreement with onnxruntime {agree:.1%}"
