"""The denoising loop, a generator of per-step latents the caller bounds (previews, progress, cancel).

    scheduler.set_timesteps(20)
    latents = rng.standard_normal(shape) * scheduler.init_noise_sigma
    for step in denoise(unet, scheduler, latents, cond=text, uncond=empty, guidance_scale=7.5, rng=rng):
        bar.update(); preview(step.latents)            # leaving the loop cancels the rest

``denoiser(x, t, cond) -> model_output`` is any model (a native UNet, onnxruntime, PyTorch);
with classifier-free guidance the unconditional and conditional halves run as one batch of two.

With ``fused=`` (a ``GuidedUpdate``, such as the C++ kernel ``guided_update``), schedulers whose
step is linear (``step_coefficients(t)``: DDIM, DDPM and Euler without clipping, Euler ancestral)
apply the guidance combine and the scheduler update in one pass over the latents, in float32;
the others (and clipping configs) take the scheduler's own float64 ``step``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from edgegen.errors import UsageError
from edgegen.schedulers.base import draw_noise

Denoiser = Callable[[np.ndarray, Any, Any], np.ndarray]
# (x, uncond, cond, scale, cx, cout, noise or None, cnoise) ->
#     cx x + cout (uncond + scale (cond - uncond)) + cnoise noise
GuidedUpdate = Callable[[np.ndarray, np.ndarray, np.ndarray, float, float, float, Any, float], np.ndarray]


@dataclass(frozen=True)
class DenoiseStep:
    index: int            # 0-based step number
    total: int            # steps in this run
    t: Any                # the scheduler timestep of this step
    latents: np.ndarray   # the sample after this step (the final image/latents after the last)


def guide(uncond: np.ndarray, cond: np.ndarray, scale: float) -> np.ndarray:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): e_u + s (e_c - e_u)."""
    return uncond + scale * (cond - uncond)


def denoise(denoiser: Denoiser, scheduler, latents: np.ndarray, *, cond: Any = None, uncond: Any = None,
            guidance_scale: float = 1.0, rng: np.random.Generator | None = None,
            fused: GuidedUpdate | None = None) -> Iterator[DenoiseStep]:
    """Run ``scheduler.timesteps`` (set beforehand) from ``latents``; yield after every step.

    Guidance runs when ``uncond`` is given and ``guidance_scale != 1``: ``cond`` and ``uncond``
    are then batched (along axis 0) with two copies of the latents in one denoiser call.
    """
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None or len(timesteps) == 0:
        raise UsageError("denoise: the scheduler has no timesteps; call scheduler.set_timesteps(steps) first")
    if not np.isfinite(guidance_scale):
        raise UsageError(f"guidance_scale: expected a finite number, found {guidance_scale!r}")
    guided = uncond is not None and guidance_scale != 1.0
    n = len(timesteps)
    both_cond = _batch(uncond, cond) if guided else None   # one array for every step (the UNet may reuse its projections)
    for i, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        if guided:
            both = denoiser(np.concatenate([x_in, x_in]), t, both_cond)
            half = len(x_in)
            u, c, scale = both[:half], both[half:], guidance_scale
        else:
            u = c = denoiser(x_in, t, cond)
            scale = 0.0
        coef = scheduler.step_coefficients(t) if fused is not None and hasattr(scheduler, "step_coefficients") else None
        if coef is not None:
            noise = draw_noise(latents.shape, rng, None).astype(np.float32) if coef.noisy else None
            latents = fused(np.ascontiguousarray(latents, np.float32), np.ascontiguousarray(u, np.float32),
                            np.ascontiguousarray(c, np.float32), float(scale), coef.cx, coef.cout, noise, coef.cnoise)
        else:
            latents = scheduler.step(guide(u, c, scale) if guided else u, t, latents, rng=rng)
        yield DenoiseStep(index=i, total=n, t=t, latents=latents)


def _batch(uncond: Any, cond: Any) -> Any:
    if isinstance(uncond, np.ndarray) and isinstance(cond, np.ndarray):
        return np.concatenate([uncond, cond])
    return [uncond, cond]
