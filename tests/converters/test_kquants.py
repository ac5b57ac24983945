"""Q4_K / Q6_K quantizers: round trips through two dequantizers, bit-exactness against ggml itself
(through llama.cpp's shared library when llama-cpp-python is installed), and the Q4_K_M mixture
against llama.cpp's own ``llama_model_quantize``."""
from __future__ import annotations

import ctypes
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgegen.constants import GGMLType, block_geometry
from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
from edgegen.converters.kquants import quantize_q4_k, quantize_q6_k
from edgegen.converters.quant_plan import use_more_bits
from edgegen.kernels.quants import dequantize

QUANTIZERS = {GGMLType.Q4_K: quantize_q4_k, GGMLType.Q6_K: quantize_q6_k}
# Relative RMS round-trip error on N(0, 1) data: about 0.072 (Q4_K) and 0.018 (Q6_K).
ERROR_BOUND = {GGMLType.Q4_K: 0.10, GGMLType.Q6_K: 0.025}


def rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def sample(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = {
        "gauss": lambda: rng.standard_normal(shape),
        "small": lambda: 0.02 * rng.standard_normal(shape),
        "positive": lambda: np.abs(rng.standard_normal(shape)),
        "sparse": lambda: rng.standard_normal(shape) * (rng.random(shape) < 0.1),
        "heavy_tail": lambda: rng.standard_t(2, shape),
        "zeros": lambda: np.zeros(shape),
        "constant": lambda: np.full(shape, 0.37),
        "tiny": lambda: 1e-9 * rng.standard_normal(shape),
    }[kind]()
    return data.astype(np.float32)


@pytest.mark.parametrize("qtype", list(QUANTIZERS))
@pytest.mark.parametrize("shape", [(1, 256), (5, 768), (16, 2048)])
def test_round_trip_error_and_two_dequantizers_agree(qtype, shape):
    x = sample("gauss", shape, seed=shape[1])
    q = QUANTIZERS[qtype](x)
    assert q.dtype == np.uint8 and q.shape == (shape[0], shape[1] // 256 * block_geometry(qtype)[1])
    ours = dequantize(q, qtype, shape[1])
    theirs = gguf.quants.dequantize(q, qtype)
    np.testing.assert_array_equal(ours, theirs)
    assert rel_rms(ours, x) < ERROR_BOUND[qtype]


@pytest.mark.parametrize("qtype", list(QUANTIZERS))
@pytest.mark.parametrize("kind", ["zeros", "constant", "tiny"])
def test_degenerate_blocks(qtype, kind):
    x = sample(kind, (3, 512))
    back = dequantize(QUANTIZERS[qtype](x), qtype, 512)
    assert np.all(np.isfinite(back))
    if kind == "zeros":
        assert not back.any()
    if kind == "constant":
        assert rel_rms(back, x) < ERROR_BOUND[qtype]


@pytest.mark.parametrize("quantize", [quantize_q4_k, quantize_q6_k])
def test_rejects_bad_shapes(quantize):
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.zeros(256, np.float32))


@pytest.mark.parametrize("quantize", [quantize_q4_k, quantize_q6_k])
def test_speed_on_a_7b_sized_matrix_slice(quantize):
    x = sample("gauss", (512, 5632))      # a quarter of a 2048 x 5632 TinyLlama FFN matrix
    start = time.perf_counter()
    quantize(x)
    assert time.perf_counter() - start < 10.0


def test_use_more_bits_layers():
    # llama.cpp's use_more_bits for 8, 22 and 32 layers: first/last eighth, then every third.
    assert [i for i in range(8) if use_more_bits(i, 8)] == [0, 3, 6, 7]
    assert [i for i in range(22) if use_more_bits(i, 22)] == [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]
    assert [i for i in range(32) if use_more_bits(i, 32)] == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28,
                                                               29, 30, 31]


# ----------------------------------------------------------------------------------------------
# Against llama.cpp (llama-cpp-python ships ggml's shared libraries)
# ----------------------------------------------------------------------------------------------

def _ggml_base():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    candidates = sorted(lib_dir.glob("libggml-base.*"))
    if not candidates:
        pytest.skip(f"no libggml-base shared library in {lib_dir}")
    lib = ctypes.CDLL(str(candidates[0]))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


@pytest.mark.parametrize("kind", ["gauss", "small", "positive", "sparse", "heavy_tail", "zeros", "constant", "tiny"])
@pytest.mark.parametrize("qtype", list(QUANTIZERS))
def test_bit_exact_against_ggml(qtype, kind):
    lib = _ggml_base()
    x = sample(kind, (32, 1024), seed=7)
    expected = np.zeros((32, 1024 // 256 * block_geometry(qtype)[1]), np.uint8)
    lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, expected.ctypes.data, 0, x.shape[0], x.shape[1], None)
    np.testing.assert_array_equal(QUANTIZERS[qtype](x), expected)


@pytest.mark.parametrize("tied", [False, True])
def test_q4_k_m_equals_llama_quantize(tmp_path, tied):
    """Our q4_k_m file and llama.cpp's Q4_K_M quantization of our f32 file: same type for every
    tensor, same bytes for every tensor (8 layers, so use_more_bits picks layers 0, 3, 6 and 7)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from tiny_models import make_tiny_hf

    hf = make_tiny_hf(tmp_path / "hf", hidden=256, ffn=256, layers=8, heads=4, kv_heads=2, tie_embeddings=tied)
    f32, ours, theirs = tmp_path / "f32.gguf", tmp_path / "ours.gguf", tmp_path / "llama.cpp.gguf"
    convert_hf_to_gguf(hf, f32, "f32", progress=False)
    report = convert_hf_to_gguf(hf, ours, "q4_k_m", progress=False)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = 1
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(theirs).encode(), ctypes.byref(params)) == 0

    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
    assert sorted(a) == sorted(b)
    types = {name: a[name].tensor_type.name for name in a}
    assert types == {name: b[name].tensor_type.name for name in b}
    q6 = sorted(name for name, t in types.items() if t == "Q6_K")
    expected_q6 = sorted([f"blk.{i}.{s}" for i in (0, 3, 6, 7) for s in ("attn_v.weight", "ffn_down.weight")]
                         + ["token_embd.weight" if tied else "output.weight"])
    assert q6 == expected_q6
    differing = [name for name in a if not np.array_equal(a[name].data, b[name].data)]
    assert differing == []
    assert {t.name: t.qtype for t in report.tensors} == types
