"""edgegen kernels: one calling convention, three implementations.

- ``ref``: NumPy references (``ref.py``), the spec and test oracle;
- ``cpp``: the C++ extension ``_cpp`` (OpenMP), the default;
- ``numba``: the Numba twins (``numba_cpu.py``).

All share the signatures documented in ``ref.py``. ``load_kernels(name)`` returns a
``Kernels`` table; the model calls through it and never knows which one runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from edgegen.errors import MissingDependencyError, UsageError

KERNEL_NAMES = ("cpp", "numba", "ref")

# Which module holds each implementation, and what each function is called there.
_MODULES = {"cpp": "edgegen.kernels._cpp", "numba": "edgegen.kernels.numba_cpu", "ref": "edgegen.kernels.ref"}
_SUFFIX = {"cpp": "", "numba": "", "ref": "_ref"}


@dataclass(frozen=True)
class Kernels:
    name: str
    matmul: Callable
    get_rows: Callable
    rmsnorm: Callable
    rope: Callable
    attention: Callable
    swiglu: Callable


def load_kernels(name: str = "cpp") -> Kernels:
    if name not in _MODULES:
        raise UsageError(f"kernels: expected one of {', '.join(KERNEL_NAMES)}, found '{name}'")
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as e:
        raise MissingDependencyError(
            f"kernels '{name}' are unavailable ({e}); reinstall with `pip install --force-reinstall edgegen`") from None
    sfx = _SUFFIX[name]
    fns = {f: getattr(module, f + sfx) for f in ("matmul", "get_rows", "rmsnorm", "rope", "attention", "swiglu")}
    return Kernels(name=name, **fns)
