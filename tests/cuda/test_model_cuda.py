"""A whole tiny model on device="cuda" (numba's simulator in CI): greedy tokens equal the native CPU
backend's; and without a GPU (no simulator) device="cuda" raises the typed error naming the fix."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import edgegen

pytest.importorskip("numba.cuda")
llama_cuda = pytest.importorskip("edgegen.models.llama_cuda")
from edgegen.kernels.cuda.attention import AttentionLaunch  # noqa: E402
from edgegen.kernels.cuda.matvec import MatvecLaunch  # noqa: E402

# tiny blocks: the simulator runs a Python thread per CUDA thread
SIM_LAUNCH = llama_cuda.CudaLaunch(matvec=MatvecLaunch(lanes=1, rows=32, tile=256),
                                   attention=AttentionLaunch(chunk=4, threads=16, max_head_dim=16), threads=32)
PROMPT = [1, 42]
NEW = 2


def cpu_greedy(path, n_ctx):
    model = edgegen.load(path, threads=1, n_ctx=n_ctx)
    s = model.new_session()
    logits = s.eval(PROMPT)
    out = []
    for _ in range(NEW):
        out.append(int(np.argmax(logits)))
        logits = s.eval([out[-1]])
    return out, model


def test_greedy_tokens_match_native_cpu(tiny_gguf):
    """llama, Q4_0 weights (the CPU backend rounds activations to 8 bits; greedy ids still agree)."""
    path = tiny_gguf("llama", "q4_0")
    want, _ = cpu_greedy(path, 8)
    model = edgegen.load(path, device="cuda", n_ctx=8, launch=SIM_LAUNCH)
    s = model.new_session()
    got = [s.eval_greedy(PROMPT)]
    for _ in range(NEW - 1):
        got.append(s.eval_greedy([got[-1]]))
    assert got == want
    assert s.tokens == PROMPT + got[:-1]


NO_SIM = """
import json, sys
from numba import cuda
if cuda.is_available():
    print(json.dumps({"gpu": True})); sys.exit()
import edgegen
try:
    edgegen.load(sys.argv[1], device="cuda")
except edgegen.MissingDependencyError as e:
    print(json.dumps({"gpu": False, "type": type(e).__name__, "msg": str(e)}))
"""


def test_no_gpu_raises_typed_error(tiny_gguf, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", NO_SIM, str(tiny_gguf("llama", "q4_0"))], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)   # the installed package
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if result["gpu"]:
        pytest.skip("a real CUDA GPU is present")
    assert result["type"] == "CudaUnavailableError"
    assert "no usable CUDA GPU" in result["msg"] and "NUMBA_ENABLE_CUDASIM=1" in result["msg"]
    assert "device='cpu'" in result["msg"]
    cli = subprocess.run([sys.executable, "-m", "edgegen", "generate", "--device", "cuda", str(tiny_gguf("llama", "q4_0")),
                          "hi"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr and "no usable CUDA GPU" in cli.stderr
