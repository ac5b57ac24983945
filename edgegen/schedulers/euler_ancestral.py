"""Euler ancestral: an Euler step down to sigma_down, then fresh noise up to sigma_{i+1}
(the ancestral sampler of k-diffusion, ``sample_euler_ancestral``; Karras et al. 2022 sec. 4
discusses it as the stochastic counterpart of their Algorithm 2).

Behaves as diffusers' ``EulerAncestralDiscreteScheduler``: same sigmas, timesteps, input scaling
and add_noise as ``EulerScheduler`` but never Karras sigmas (diffusers' class has no such option,
so use_karras_sigmas is ignored), and prediction_type epsilon or v_prediction only.
"""
from __future__ import annotations

import numpy as np

from edgegen.errors import UsageError
from edgegen.schedulers.base import SchedulerConfig, as_float64, draw_noise
from edgegen.schedulers.euler import EulerScheduler, euler_schedule, predicted_x0


class EulerAncestralScheduler(EulerScheduler):
    NOISY = True

    def __init__(self, config: SchedulerConfig):
        if config.prediction_type == "sample":
            raise UsageError("prediction_type: EulerAncestralScheduler supports epsilon and v_prediction, "
                             "found 'sample'; use the euler or ddim scheduler for sample-predicting models")
        super().__init__(config)

    def _schedule(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return euler_schedule(self.config, n, karras=False)

    def step(self, model_output, t, sample, *, rng: np.random.Generator | None = None,
             noise: np.ndarray | None = None) -> np.ndarray:
        """x_{i+1} from x_i; draws noise (rng or noise=) at every step, as diffusers does."""
        i, sigma = self._sigma(t, "step")
        out, x, dtype = as_float64(model_output, sample, ("model_output", "sample"), "EulerAncestralScheduler.step")
        z = draw_noise(x.shape, rng, noise)
        sigma_to = float(self.sigmas[i + 1])
        # 1. split sigma_to^2 = sigma_down^2 + sigma_up^2 so that the step down to sigma_down then
        #    noise of std sigma_up is the DDPM posterior with eta = 1:
        #    sigma_up = sqrt(sigma_to^2 (sigma^2 - sigma_to^2) / sigma^2)
        sigma_up = (sigma_to ** 2 * (sigma ** 2 - sigma_to ** 2) / sigma ** 2) ** 0.5
        sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
        # 2. Euler step to sigma_down: d = (x - D(x; sigma)) / sigma
        d = (x - predicted_x0(self.config, out, x, sigma)) / sigma
        x = x + (sigma_down - sigma) * d
        # 3. add the noise: x += sigma_up z
        return (x + sigma_up * z).astype(dtype)
