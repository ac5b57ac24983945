"""DDIM: denoising diffusion implicit models (Song, Meng & Ermon 2020, arXiv:2010.02502).

Behaves as diffusers' ``DDIMScheduler``: deterministic for eta = 0 (the default), DDPM-like
ancestral noise for eta = 1; set_alpha_to_one, clip_sample; prediction_type epsilon,
v_prediction, sample.
"""
from __future__ import annotations

import numpy as np

from edgegen.errors import UsageError
from edgegen.schedulers.base import (DiscreteVPScheduler, SchedulerConfig, StepCoefficients, as_float64, draw_noise,
                                     probe_linear_step, timestep_index)


class DDIMScheduler(DiscreteVPScheduler):
    def __init__(self, config: SchedulerConfig):
        super().__init__(config)
        # abar for the step past t = 0: 1 (a clean sample) or abar_0
        self.final_alpha_cumprod = 1.0 if config.set_alpha_to_one else float(self.alphas_cumprod[0])

    def step(self, model_output, t, sample, *, eta: float = 0.0, rng: np.random.Generator | None = None,
             noise: np.ndarray | None = None) -> np.ndarray:
        """x_{t-1} from x_t (eq. 12). Draws noise (rng or noise=) only when eta > 0."""
        i = timestep_index(self.timesteps, t, "DDIMScheduler.step")
        out, x, dtype = as_float64(model_output, sample, ("model_output", "sample"), "DDIMScheduler.step")
        if not eta >= 0:
            raise UsageError(f"DDIMScheduler.step: eta must be >= 0 (0 = DDIM, 1 = DDPM-like), found {eta!r}")
        cfg, t = self.config, int(self.timesteps[i])
        # 1. the previous timestep: t minus a fixed stride T // n, whatever the spacing (diffusers' rule,
        #    which the trailing and linspace spacings inherit), and abar there
        prev_t = t - cfg.num_train_timesteps // len(self.timesteps)
        abar = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        # 2. predicted x_0 and epsilon ("predicted x_0" in eq. 12; Salimans & Ho 2022, sec. 4, for v)
        if cfg.prediction_type == "epsilon":
            x0, eps = (x - (1 - abar) ** 0.5 * out) / abar ** 0.5, out
        elif cfg.prediction_type == "v_prediction":
            x0 = abar ** 0.5 * x - (1 - abar) ** 0.5 * out
            eps = abar ** 0.5 * out + (1 - abar) ** 0.5 * x
        else:
            x0, eps = out, (x - abar ** 0.5 * out) / (1 - abar) ** 0.5
        # 3. clip x_0 (epsilon keeps the unclipped model output, as diffusers' default does)
        if cfg.clip_sample:
            x0 = np.clip(x0, -cfg.clip_sample_range, cfg.clip_sample_range)
        # 4. sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev)) (eq. 16)
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)) ** 0.5
        # 5. x_{t-1} = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z (eq. 12)
        prev = abar_prev ** 0.5 * x0 + (1 - abar_prev - sigma ** 2) ** 0.5 * eps
        if eta > 0:
            prev = prev + sigma * draw_noise(x.shape, rng, noise)
        return prev.astype(dtype)

    def step_coefficients(self, t, *, eta: float = 0.0) -> StepCoefficients | None:
        """``step`` at t as x_next = cx x + cout out + cnoise z (a fused guidance + step kernel runs it
        in one pass); None with clip_sample, which makes the step nonlinear."""
        if self.config.clip_sample:
            return None
        return probe_linear_step(self, t, eta > 0, eta=eta)
