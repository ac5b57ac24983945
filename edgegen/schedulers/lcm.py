"""Latent Consistency Model sampling (Luo et al. 2023, arXiv:2310.04378), as diffusers'
LCMScheduler runs it: each step maps x_t straight to a clean estimate with the consistency
function f(x, t) = c_skip(t) x + c_out(t) x0_pred (Song et al. 2023, "Consistency Models", eq. 3),
then re-noises it to the next, lower timestep (LCM's multistep sampling algorithm).

The schedule is not the config's ``timestep_spacing``: it picks ``num_inference_steps`` of the
``original_inference_steps`` timesteps LCM was distilled on (the skipping-step schedule, k = T // N).
"""
from __future__ import annotations

import numpy as np

from edgegen.errors import UsageError
from edgegen.schedulers.base import (SchedulerConfig, add_noise_at, alphas_cumprod_for, check_steps, draw_noise,
                                     next_step_index)

SIGMA_DATA = 0.5   # consistency-model boundary condition (Song et al. 2023, Sec. 3; LCM keeps it)


class LCMScheduler:
    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.alphas_cumprod = alphas_cumprod_for(config)   # [T] float64
        self.init_noise_sigma = 1.0
        self.timesteps = np.zeros(0, dtype=np.int64)
        self._step_index: int | None = None

    def set_timesteps(self, num_inference_steps: int) -> None:
        n = check_steps(num_inference_steps, self.config)
        T, N = self.config.num_train_timesteps, self.config.original_inference_steps
        if not isinstance(N, int) or not 1 <= N <= T:
            raise UsageError(f"original_inference_steps: expected an integer between 1 and {T}, found {N!r}")
        if n > N:
            raise UsageError(f"num_inference_steps: expected at most original_inference_steps={N} "
                             f"(the schedule is a subset of the distillation schedule), found {n}")
        # 1. the distillation schedule: every k-th training timestep, k = T // N (LCM's skipping step)
        k = T // N
        origin = (np.arange(1, N + 1) * k - 1)[::-1]
        # 2. n of those, evenly spaced by index, highest first
        self.timesteps = origin[np.floor(np.linspace(0, N, n, endpoint=False)).astype(np.int64)].astype(np.int64)
        self._step_index = None

    def scale_model_input(self, sample: np.ndarray, t: int) -> np.ndarray:
        return np.asarray(sample)   # the VP sample is the model input; nothing to scale

    def boundary_scalings(self, t: int) -> tuple[float, float]:
        """c_skip(t), c_out(t) with t scaled by timestep_scaling, so c_skip ~ 0 and c_out ~ 1 but at t = 0."""
        s = t * self.config.timestep_scaling
        return SIGMA_DATA ** 2 / (s ** 2 + SIGMA_DATA ** 2), s / np.sqrt(s ** 2 + SIGMA_DATA ** 2)

    def _index(self, t: int) -> int:
        return next_step_index(self.timesteps, self._step_index, t, "LCMScheduler.step")

    def step(self, model_output, t, sample, *, rng=None, noise=None) -> np.ndarray:
        """One LCM step from t; adds fresh noise (from ``noise`` or ``rng``) unless it is the last step."""
        sample, model_output = np.asarray(sample), np.asarray(model_output)
        if model_output.shape != sample.shape:
            raise UsageError(f"model_output: expected the sample's shape {sample.shape}, found {model_output.shape}")
        t = int(t)
        i = self._index(t)
        last = i == len(self.timesteps) - 1
        x, eps = sample.astype(np.float64), model_output.astype(np.float64)
        # 1. alpha_bar at t and at the next timestep (unused on the last step: no noise is added there)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[self.timesteps[i + 1]] if not last else a_t
        # 2. predicted x0 from the model's parameterization
        if self.config.prediction_type == "epsilon":
            x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        elif self.config.prediction_type == "v_prediction":
            x0 = np.sqrt(a_t) * x - np.sqrt(1 - a_t) * eps
        else:  # "sample"
            x0 = eps
        if self.config.clip_sample:
            x0 = np.clip(x0, -self.config.clip_sample_range, self.config.clip_sample_range)
        # 3. consistency function: denoised = c_out x0 + c_skip x_t
        c_skip, c_out = self.boundary_scalings(t)
        denoised = c_out * x0 + c_skip * x
        # 4. multistep sampling: re-noise to the next timestep, x = sqrt(a') denoised + sqrt(1 - a') z
        if last:
            prev = denoised
        else:
            z = draw_noise(sample.shape, rng, noise).astype(np.float64)
            prev = np.sqrt(a_prev) * denoised + np.sqrt(1 - a_prev) * z
        self._step_index = i + 1
        return prev.astype(sample.dtype)

    def add_noise(self, original: np.ndarray, noise: np.ndarray, t) -> np.ndarray:
        """Forward process q(x_t | x_0): sqrt(a_t) x0 + sqrt(1 - a_t) noise, t a scalar or one per batch row."""
        return add_noise_at(self.alphas_cumprod, original, noise, t)
