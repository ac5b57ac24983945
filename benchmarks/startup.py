"""Cold start and peak memory, each engine in a fresh Python process.

    first_token_s, peak_rss = measure(engine, path, threads, n_ctx)

The child imports the engine, loads the GGUF file, prefills an 8-token prompt and picks the
first token greedily, then prints ``FIRST``; the parent times that from the moment it starts
the process (interpreter start-up and imports included, for both engines alike). The child
then decodes ``N_DECODE`` tokens and reports its peak resident set (``ru_maxrss``: file pages
it touched, the KV cache, and everything else: ``VmHWM`` of /proc/self/status, Linux).
The file is read once beforehand, so both engines start with it in the page cache.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from edgegen.backends.llamacpp import extra_bufts

PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]
N_DECODE = 32
KIB = 1024

_CHILD = r"""
import sys
import numpy as np
engine, path, threads, n_ctx, n_decode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
extra_bufts = sys.argv[6] == "1"
prompt = [1, 2, 3, 4, 5, 6, 7, 8]
if engine == "edgegen":
    import edgegen
    model = edgegen.load(path, threads=threads, n_ctx=n_ctx)
    session = model.new_session()
    step = session.eval
else:
    import llama_cpp
    import llama_cpp.llama_cpp as low
    default_params = low.llama_model_default_params
    def model_params():   # edgegen.backends.llamacpp.model_params, without importing edgegen into the timing
        params = default_params()
        params.use_extra_bufts = extra_bufts
        return params
    low.llama_model_default_params = model_params
    llm = llama_cpp.Llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, verbose=False)
    def step(ids):
        llm.eval(ids)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
tok = int(np.argmax(step(prompt)))
print("FIRST", flush=True)
for _ in range(n_decode):
    tok = int(np.argmax(step([tok])))
# VmHWM: this process's peak resident set (ru_maxrss would carry the parent's peak across exec)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("RSS", int(hwm.split()[1]), flush=True)
"""


def measure(engine: str, path: Path, threads: int, n_ctx: int) -> tuple[float, int]:
    """(seconds from process start to the first token, peak RSS bytes); engine "edgegen" or "llama.cpp"."""
    Path(path).read_bytes()  # into the page cache: both engines start warm on the file
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, engine, str(path), str(threads), str(n_ctx), str(N_DECODE),
                              str(int(extra_bufts()))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = child.stdout.readline()
    first_token_s = time.perf_counter() - t0
    rest, err = child.communicate(timeout=600)
    if child.returncode != 0 or first.strip() != "FIRST":
        raise RuntimeError(f"{engine} start-up run failed (exit {child.returncode}): {err.strip()[-500:]}")
    fields = rest.split()
    return first_token_s, int(fields[fields.index("RSS") + 1]) * KIB
