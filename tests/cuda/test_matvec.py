"""CUDA matvec and embedding lookup against the NumPy references, on awkward shapes, outputs poisoned."""
from __future__ import annotations

import numpy as np
import pytest
from kernel_data import make_weights

from edgegen.constants import GGMLType
from edgegen.kernels import ref
from edgegen.kernels.quants import dequantize

cuda = pytest.importorskip("numba.cuda")
mv = pytest.importorskip("edgegen.kernels.cuda.matvec")

RTOL = 1e-4    # of sum_k |W[n,k] x[k]|: float32 rounding of a dot product


def _check(w, qtype, K, x, got, bias=None, base=None):
    want = np.empty((1, len(got)), np.float32)
    ref.matmul_ref(w, qtype, K, x[None], want)
    want = want[0].astype(np.float64)
    if bias is not None:
        want += bias
    if base is not None:
        want += base
    bound = RTOL * (np.abs(dequantize(w, qtype, K)) @ np.abs(x)) + 1e-6
    assert np.all(np.isfinite(got)), "an output element was not written"
    np.testing.assert_array_less(np.abs(got - want), bound + RTOL * np.abs(want))


@pytest.mark.parametrize("qtype,N,K,launch", [
    (GGMLType.Q8_0, 7, 96, mv.MatvecLaunch(lanes=32, rows=2, tile=256)),
    (GGMLType.Q4_0, 5, 544, mv.MatvecLaunch(lanes=16, rows=3, tile=256)),    # 3 tiles, the last partial
    (GGMLType.Q4_1, 9, 64, mv.MatvecLaunch(lanes=8, rows=4, tile=256)),
    (GGMLType.Q4_K, 3, 512, mv.MatvecLaunch(lanes=32, rows=2, tile=256)),    # 2 tiles of 1 superblock
    (GGMLType.Q6_K, 3, 256, mv.MatvecLaunch(lanes=16, rows=2, tile=256)),
    (GGMLType.F16, 5, 40, mv.MatvecLaunch(lanes=8, rows=2, tile=256)),
    (GGMLType.F32, 3, 300, mv.MatvecLaunch(lanes=4, rows=2, tile=256)),     # 2 tiles, K not a block multiple
])
def test_matvec_matches_reference(qtype, N, K, launch):
    rng = np.random.default_rng(int(qtype) * 100 + N)
    w = make_weights(qtype, N, K, rng)
    x = rng.standard_normal(K).astype(np.float32)
    t = mv.DeviceTensor.upload(w, qtype, N, K)
    out = cuda.to_device(np.full(N, np.nan, np.float32))
    mv.matvec(t, cuda.to_device(x), out, launch=launch)
    _check(w, qtype, K, x, out.copy_to_host())


def test_matvec_bias_and_accumulate():
    rng = np.random.default_rng(3)
    N, K, qtype = 6, 64, GGMLType.Q4_0
    w = make_weights(qtype, N, K, rng)
    x, bias, base = (rng.standard_normal(n).astype(np.float32) for n in (K, N, N))
    t = mv.DeviceTensor.upload(w, qtype, N, K)
    out = cuda.to_device(base.copy())
    mv.matvec(t, cuda.to_device(x), out, bias=cuda.to_device(bias), accumulate=True,
              launch=mv.MatvecLaunch(lanes=4, rows=4, tile=256))
    _check(w, qtype, K, x, out.copy_to_host(), bias=bias, base=base)


@pytest.mark.parametrize("qtype,K", [(GGMLType.Q8_0, 64), (GGMLType.Q4_0, 96), (GGMLType.Q4_1, 32),
                                     (GGMLType.Q4_K, 256), (GGMLType.Q6_K, 256), (GGMLType.F16, 40),
                                     (GGMLType.F32, 37)])
def test_get_rows_is_exact(qtype, K):
    rng = np.random.default_rng(K)
    w = make_weights(qtype, 4, K, rng)
    t = mv.DeviceTensor.upload(w, qtype, 4, K)
    out = cuda.to_device(np.full(K, np.nan, np.float32))
    mv.get_rows(t, 2, out, threads=64)
    want = np.empty((1, K), np.float32)
    ref.get_rows_ref(w, qtype, K, np.array([2], np.int32), want)
    np.testing.assert_array_equal(out.copy_to_host(), want[0])
