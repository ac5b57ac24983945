"""Whole-model parity: edgegen's native engine against transformers (PyTorch) on tiny random models."""
from __future__ import annotations

import numpy as np
import pytest
from hf_names import hf_to_gguf_names

import edgegen
from edgegen.gguf_file import GGUFFile
from edgegen.kernels.quants import dequantize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def hf_model(hf_dir):
    m = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    return m.eval()


def hf_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def hf_greedy(model, ids, n) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    return out[0, len(ids):].tolist()


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (halves -> interleaved pairs)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_dequantized_into(model, gguf_path) -> None:
    """Replace the HF model's weights with the GGUF file's (dequantized) ones: the reference for quantized files."""
    f = GGUFFile.open(gguf_path)
    cfg = model.config
    names = hf_to_gguf_names(cfg.num_hidden_layers)
    arch = f.metadata["general.architecture"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            gg = names[name]
            if gg == "output.weight" and gg not in f.tensors:
                gg = "token_embd.weight"
            t = f.tensors[gg]
            w = dequantize(t.data, t.qtype, t.cols).reshape(p.shape)
            if arch == "llama" and gg.endswith(("attn_q.weight", "attn_k.weight")):
                heads = cfg.num_attention_heads if "attn_q" in gg else cfg.num_key_value_heads
                w = unpermute(w, heads)
            p.copy_(torch.from_numpy(np.array(w)))  # a writable copy


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("arch,tokenizer", [("llama", "bpe"), ("llama", "spm"), ("qwen2", "bpe")])
@pytest.mark.parametrize("kernels", ["cpp", "numba", "ref"])
def test_f32_logits_match_transformers(tiny_hf, tiny_gguf, arch, tokenizer, kernels):
    model = edgegen.load(tiny_gguf(arch, "f32", tokenizer), threads=2, kernels=kernels)
    ids = model.tokenizer.encode(PROMPT)
    ref = hf_logits(hf_model(tiny_hf(arch, tokenizer)), ids)
    ours = model.logits(ids)
    assert ours.shape == (len(ids), model.config.vocab_size) and ours.dtype == np.float32
    assert rel_err(ours, ref) < 1e-4


def test_tied_embeddings_match_transformers(tiny_hf, tiny_gguf):
    model = edgegen.load(tiny_gguf("llama", "f32", tied=True), threads=2)
    assert model.config.tied_embeddings
    ids = model.tokenizer.encode(PROMPT)
    assert rel_err(model.logits(ids), hf_logits(hf_model(tiny_hf("llama", "bpe", True)), ids)) < 1e-4


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_f16_logits_close_to_transformers(tiny_hf, tiny_gguf, arch):
    model = edgegen.load(tiny_gguf(arch, "f16"), threads=2)
    ids = model.tokenizer.encode(PROMPT)
    assert rel_err(model.logits(ids), hf_logits(hf_model(tiny_hf(arch)), ids)) < 1e-2


# Float activations: only float32 summation differs from the reference. 8-bit activations (the
# default kernels, as llama.cpp's CPU path): each product carries the activation rounding too.
ACTIVATION_TOLERANCE = {"cpp-float": 1e-4, "cpp": 5e-2, "cpp-scalar": 5e-2}


@pytest.mark.parametrize("kernels", ACTIVATION_TOLERANCE)
@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_0", "q4_k_m"])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_quantized_logits_match_dequantized_reference(tiny_hf, tiny_gguf, arch, quant, kernels):
    path = tiny_gguf(arch, quant)
    model = edgegen.load(path, threads=2, kernels=kernels)
    ids = model.tokenizer.encode(PROMPT)
    ref_model = hf_model(tiny_hf(arch))
    load_dequantized_into(ref_model, path)
    tolerance = 1e-4 if quant == "f16" else ACTIVATION_TOLERANCE[kernels]
    assert rel_err(model.logits(ids), hf_logits(ref_model, ids)) < tolerance


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("kernels", ["cpp", "numba"])
def test_prefill_then_decode_equals_full_forward(tiny_gguf, arch, kernels):
    model = edgegen.load(tiny_gguf(arch, "q8_0"), threads=2, kernels=kernels)
    ids = model.tokenizer.encode(PROMPT)
    full = model.logits(ids)
    session = model.new_session()
    split = len(ids) // 2
    steps = [session.eval(ids[:split], all_logits=True)]
    steps += [session.eval([t], all_logits=True) for t in ids[split:]]
    np.testing.assert_allclose(np.concatenate(steps), full, rtol=0, atol=1e-4 * np.abs(full).max())
    assert session.n_past == len(ids)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_64_greedy_tokens_equal_transformers(tiny_hf, tiny_gguf, arch):
    model = edgegen.load(tiny_gguf(arch, "f32"), threads=2)
    ids = model.tokenizer.encode("Once upon a time")
    ours = [t.id for t in model.generate(ids, max_tokens=64, temperature=0.0, ignore_eos=True)]
    assert ours == hf_greedy(hf_model(tiny_hf(arch)), ids, 64)


@pytest.mark.parametrize("quant", ["f32", "q8_0", "q4_k_m"])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("kernels", ["cpp", "cpp-scalar", "cpp-float"])
def test_compiled_forward_equals_python_loop(tiny_gguf, arch, quant, kernels):
    """The one-call C++ forward runs the same kernels in the same order as llama.forward:
    prefill and decode logits are bit-identical, and so are the KV caches."""
    path = tiny_gguf(arch, quant)
    fast = edgegen.load(path, threads=2, kernels=kernels)
    loop = edgegen.load(path, threads=2, kernels=kernels, compiled=False)
    assert fast.compiled is not None and loop.compiled is None
    ids = fast.tokenizer.encode(PROMPT)
    a, b = fast.new_session(), loop.new_session()
    np.testing.assert_array_equal(a.eval(ids[:-3], all_logits=True), b.eval(ids[:-3], all_logits=True))
    for t in ids[-3:]:
        np.testing.assert_array_equal(a.eval([t]), b.eval([t]))
    assert a.n_past == b.n_past == len(ids)
    assert a.last_forward_seconds > 0 and b.last_forward_seconds is None
    np.testing.assert_array_equal(a.cache.k[:, :, :len(ids)], b.cache.k[:, :, :len(ids)])
    np.testing.assert_array_equal(a.cache.v[:, :, :len(ids)], b.cache.v[:, :, :len(ids)])


@pytest.mark.parametrize("quant", ["f16", "q4_k_m"])
def test_read_header_tensor_infos_equal_gguf_reader(tiny_gguf, quant):
    """edgegen's own header parser (used at load) against gguf-py's reader: names, dims in ggml
    order, type ids and absolute data offsets of every tensor."""
    from gguf import GGUFReader

    from edgegen.gguf_meta import read_header
    path = tiny_gguf("qwen2", quant)
    _, infos = read_header(path)
    theirs = [(t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), int(t.data_offset))
              for t in GGUFReader(path).tensors]
    assert [(i.name, i.dims, i.type_id, i.offset) for i in infos] == theirs
