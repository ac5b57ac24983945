"""Is numba.cuda usable here? The typed error when it is not, naming what is missing and the fix.

Nothing here imports numba at module import: ``require_cuda()`` does, when a caller asks for the
CUDA path. Under ``NUMBA_ENABLE_CUDASIM=1`` (read by numba when it is first imported) numba's
simulator runs every kernel on CPU threads: correct but slow, for tests and CI.
"""
from __future__ import annotations

from edgegen.errors import MissingDependencyError

NUMBA_CUDA_FIX = "pip install numba-cuda"
SIMULATOR_HINT = "set NUMBA_ENABLE_CUDASIM=1 before starting Python to run the CUDA kernels on the CPU simulator (slow)"


class CudaUnavailableError(MissingDependencyError):
    """device="cuda" was asked for, and numba.cuda or a CUDA GPU with its driver is missing."""


def require_cuda():
    """numba's ``cuda`` module, ready to launch kernels (a GPU, or the simulator); else CudaUnavailableError."""
    try:
        from numba import cuda
    except ImportError as e:
        raise CudaUnavailableError(
            f"device='cuda' needs numba's CUDA target, which cannot be imported ({e}); install it with "
            f"`{NUMBA_CUDA_FIX}`, or use device='cpu'") from None
    if simulator_enabled(cuda):
        return cuda
    if not cuda.is_available():
        raise CudaUnavailableError(
            f"device='cuda': numba.cuda finds no usable CUDA GPU ({_driver_reason(cuda)}); run on a machine "
            f"with an NVIDIA GPU and its driver, or use device='cpu', or {SIMULATOR_HINT}")
    return cuda


def simulator_enabled(cuda) -> bool:
    """True when numba runs CUDA kernels on its CPU simulator."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def _driver_reason(cuda) -> str:
    """One line: why numba's CUDA driver did not initialise."""
    try:
        from numba.cuda.cudadrv.driver import driver
        reason = getattr(driver, "initialization_error", None)
    except ImportError:
        reason = None
    text = " ".join(str(reason or "no CUDA driver or device found").split())
    return text[:200]
