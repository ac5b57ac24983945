"""edgegen kernels: one calling convention, several implementations.

- ``ref``: NumPy references (``ref.py``), the spec and test oracle;
- ``cpp``: the C++ extension ``_cpp`` (OpenMP), the default. Block formats run as integer dot
  products against activations rounded to 8 bits (``ref.matmul_act_q8_ref``), with the SIMD
  table this CPU runs best (``_cpp.best_isa()``);
- ``cpp-scalar``, ``cpp-avx2``, ``cpp-neon``: the same, with that dot table forced (the scalar
  one runs everywhere; a SIMD one only where the CPU has it);
- ``cpp-float``: the C++ kernels with float32 activations, weights decoded (``ref.matmul_ref``);
- ``numba``: the Numba twins (``numba_cpu.py``), float32 activations;
- ``ggml``: llama.cpp's CPU arithmetic for x86 AVX2 builds, emulated in NumPy (``ggml_x86.py``):
  slow, Q4_1 / Q8_0 weights only; a yardstick that reproduces llama.cpp's logits bit for bit;
  ``ggml-avx512``: the same for builds with AVX-512 (16-lane float vectors, its own expf).

All share the signatures documented in ``ref.py``. ``load_kernels(name)`` returns a
``Kernels`` table; the model calls through it and never knows which one runs.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Callable

from edgegen.errors import MissingDependencyError, UsageError

KERNEL_NAMES = ("cpp", "cpp-scalar", "cpp-avx2", "cpp-neon", "cpp-float", "numba", "ref", "ggml", "ggml-avx512")
FUNCTIONS = ("matmul", "get_rows", "rmsnorm", "rope", "attention", "swiglu")

# Which module holds each implementation, and what each function is called there.
_MODULES = {"cpp": "edgegen.kernels._cpp", "numba": "edgegen.kernels.numba_cpu", "ref": "edgegen.kernels.ref",
            "ggml": "edgegen.kernels.ggml_x86"}
_SUFFIX = {"cpp": "", "numba": "", "ref": "_ref", "ggml": ""}


@dataclass(frozen=True)
class Kernels:
    name: str
    int8_act: bool           # matmul rounds activations to 8 bits for block formats (matmul_act_q8_ref)
                             # below gemm_min_tokens rows; from there on it is a float GEMM (matmul_ref)
    isa: str                 # the C++ dot table ("auto" = best for this CPU); "" for numba / ref
    compiled: object | None  # the C++ module (its whole-model forward, make_decoder) or None
    matmul: Callable
    get_rows: Callable
    rmsnorm: Callable
    rope: Callable
    attention: Callable
    swiglu: Callable


def load_kernels(name: str = "cpp") -> Kernels:
    if name not in KERNEL_NAMES:
        raise UsageError(f"kernels: expected one of {', '.join(KERNEL_NAMES)}, found '{name}'")
    family, _, variant = name.partition("-")
    try:
        module = importlib.import_module(_MODULES[family])
    except ImportError as e:
        raise MissingDependencyError(
            f"kernels '{name}' are unavailable ({e}); reinstall with `pip install --force-reinstall edgegen`") from None
    fns = {f: getattr(module, f + _SUFFIX[family]) for f in FUNCTIONS}
    int8_act = family == "cpp" and variant != "float"
    isa = ""
    if family == "cpp":
        isa = "auto" if variant in ("", "float") else variant
        if isa != "auto" and isa not in module.isa_names():
            raise UsageError(f"kernels '{name}': this CPU does not run {isa} (it runs: {', '.join(module.isa_names())})")
        fns["matmul"] = functools.partial(module.matmul, isa=isa, int8_act=int8_act)
        fns["attention"] = functools.partial(module.attention, isa=isa)
        fns["swiglu"] = functools.partial(module.swiglu, isa=isa)
    elif family == "ggml" and variant == "avx512":   # 16-lane float vectors where ggml's AVX-512 code differs
        fns["attention"] = functools.partial(module.attention, width=16)
        fns["swiglu"] = functools.partial(module.swiglu, width=16)
    return Kernels(name=name, int8_act=int8_act, isa=isa, compiled=module if family == "cpp" else None, **fns)


def simd_summary() -> str:
    """Which C++ dot-product table ``load_kernels("cpp")`` uses on this CPU, and what else it runs."""
    try:
        cpp = importlib.import_module(_MODULES["cpp"])
    except ImportError:
        return "C++ extension not built (numba and ref kernels only)"
    return f"C++ dot products: {cpp.best_isa()} (this CPU runs: {', '.join(cpp.isa_names())})"
