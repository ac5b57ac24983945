"""DDPM: ancestral sampling of the learned reverse process (Ho et al. 2020, arXiv:2006.11239).

Behaves as diffusers' ``DDPMScheduler`` (variance_type fixed_small / fixed_small_log / fixed_large,
clip_sample; prediction_type epsilon, v_prediction, sample). Also home of the few helpers every
discrete-timestep scheduler here shares: timestep spacing, timestep lookup, argument checks.
"""
from __future__ import annotations

import numpy as np

from edgegen.errors import UsageError
from edgegen.schedulers.base import (DiscreteVPScheduler, SchedulerConfig, StepCoefficients, as_float64, draw_noise,
                                     probe_linear_step, timestep_index)

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large")


class DDPMScheduler(DiscreteVPScheduler):
    def __init__(self, config: SchedulerConfig):
        if config.variance_type not in VARIANCE_TYPES:
            raise UsageError(f"variance_type: DDPMScheduler supports {', '.join(VARIANCE_TYPES)}, "
                             f"found {config.variance_type!r}")
        super().__init__(config)

    def step(self, model_output, t, sample, *, rng: np.random.Generator | None = None,
             noise: np.ndarray | None = None) -> np.ndarray:
        """x_{t-1} from x_t. Draws noise (rng or noise=) unless t == 0."""
        i = timestep_index(self.timesteps, t, "DDPMScheduler.step")
        out, x, dtype = as_float64(model_output, sample, ("model_output", "sample"), "DDPMScheduler.step")
        cfg, t = self.config, int(self.timesteps[i])
        # 1. abar_t, abar_prev (the next timestep in the schedule; 1 past the end), the step's beta_t
        abar = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[self.timesteps[i + 1]] if i + 1 < len(self.timesteps) else 1.0
        alpha_t = abar / abar_prev
        beta_t = 1 - alpha_t
        # 2. predicted x_0 (eq. 15 for epsilon; Salimans & Ho 2022, sec. 4, for v)
        if cfg.prediction_type == "epsilon":
            x0 = (x - (1 - abar) ** 0.5 * out) / abar ** 0.5
        elif cfg.prediction_type == "v_prediction":
            x0 = abar ** 0.5 * x - (1 - abar) ** 0.5 * out
        else:
            x0 = out
        # 3. clip x_0 as the DDPM reference code does
        if cfg.clip_sample:
            x0 = np.clip(x0, -cfg.clip_sample_range, cfg.clip_sample_range)
        # 4. posterior mean mu~_t(x_t, x_0) (eq. 7)
        mean = (abar_prev ** 0.5 * beta_t / (1 - abar)) * x0 + (alpha_t ** 0.5 * (1 - abar_prev) / (1 - abar)) * x
        if t == 0:
            return mean.astype(dtype)
        # 5. sigma_t^2 = beta~_t (fixed_small, eq. 7) or beta_t (fixed_large) (sec. 3.2); add sigma_t z
        variance = max((1 - abar_prev) / (1 - abar) * beta_t, 1e-20)
        if cfg.variance_type == "fixed_large":
            variance = beta_t
        z = draw_noise(x.shape, rng, noise)
        return (mean + variance ** 0.5 * z).astype(dtype)

    def step_coefficients(self, t) -> StepCoefficients | None:
        """``step`` at t as x_next = cx x + cout out + cnoise z (noise unless t == 0); None with
        clip_sample, which makes the step nonlinear."""
        if self.config.clip_sample:
            return None
        i = timestep_index(self.timesteps, t, "DDPMScheduler.step_coefficients")
        return probe_linear_step(self, t, int(self.timesteps[i]) != 0)
