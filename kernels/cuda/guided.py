"""The diffusion update in one pass: classifier-free guidance and a linear scheduler step.

    out = cx * x + cout * (uncond + scale * (cond - uncond)) + cnoise * noise

Spec: ``edgegen.kernels.diffusion_ref.guided_update_ref`` (noise may be None; out may be x). The
``fused=`` callable of ``edgegen.diffusion.loop.denoise`` is ``guided_update_host``.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

THREADS = 256


@cuda.jit
def _guided(x, uncond, cond, scale, cx, cout, noise, cnoise, has_noise, out):
    i = cuda.grid(1)
    if i < out.size:
        u = uncond[i]
        y = cx * x[i] + cout * (u + scale * (cond[i] - u))
        if has_noise:
            y += cnoise * noise[i]
        out[i] = y


def guided_update(x, uncond, cond, scale: float, cx: float, cout: float, noise, cnoise: float, out,
                  threads: int = THREADS) -> None:
    """Flat float32 device arrays of one length; ``noise`` None for a deterministic step."""
    n = out.size
    for name, a in (("x", x), ("uncond", uncond), ("cond", cond)) + ((("noise", noise),) if noise is not None else ()):
        if a.size != n:
            raise ValueError(f"guided_update: {name} has {a.size} values, out has {n}")
    f = np.float32
    _guided[-(-n // threads), threads](x, uncond, cond, f(scale), f(cx), f(cout), x if noise is None else noise,
                                       f(cnoise), noise is not None, out)


def guided_update_host(x: np.ndarray, uncond: np.ndarray, cond: np.ndarray, scale: float, cx: float, cout: float,
                       noise, cnoise: float) -> np.ndarray:
    """``loop.GuidedUpdate`` over host arrays: copies in, one kernel, copies the latents back."""
    dev = [cuda.to_device(np.ascontiguousarray(a, np.float32).reshape(-1)) for a in (x, uncond, cond)]
    nz = cuda.to_device(np.ascontiguousarray(noise, np.float32).reshape(-1)) if noise is not None else None
    out = cuda.device_array(x.size, np.float32)
    guided_update(*dev, scale, cx, cout, nz, cnoise, out)
    return out.copy_to_host().reshape(x.shape)
