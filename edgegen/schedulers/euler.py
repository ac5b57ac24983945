"""Euler: the first-order ODE sampler of Karras et al. 2022 (arXiv:2206.00364), Algorithm 2 with
S_churn = 0 (i.e. deterministic), over the sigmas of a discrete-time (VP) model.

Behaves as diffusers' ``EulerDiscreteScheduler`` (interpolation_type linear, final sigma 0,
discrete timesteps), including use_karras_sigmas. Works in the variance-exploding view:
x = x_0 + sigma eps with sigma_t = sqrt((1 - abar_t) / abar_t), so the initial sample has
std ``init_noise_sigma`` and the model sees ``scale_model_input(x, t)`` = x / sqrt(sigma^2 + 1).
Timesteps are floats: linspace spacing and Karras sigmas fall between training timesteps.
"""
from __future__ import annotations

import numpy as np

from edgegen.schedulers.base import (SchedulerConfig, StepCoefficients, alphas_cumprod_for, as_float64, check_steps,
                                     probe_linear_step, spaced_timesteps, timestep_index)

KARRAS_RHO = 7.0   # rho of Karras et al. eq. 5 (their recommended value)


def sigma_to_t(sigmas: np.ndarray, log_train_sigmas: np.ndarray) -> np.ndarray:
    """The fractional training timestep of each sigma, interpolating linearly in log sigma."""
    log_s = np.log(np.maximum(sigmas, 1e-10))
    dists = log_s - log_train_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_train_sigmas) - 2)
    lo, hi = log_train_sigmas[low], log_train_sigmas[low + 1]
    w = np.clip((lo - log_s) / (lo - hi), 0, 1)
    return (1 - w) * low + w * (low + 1)


def euler_schedule(config: SchedulerConfig, n: int, *, karras: bool) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps [n], sigmas [n + 1] ending in 0), descending, float64, as diffusers builds them."""
    abar = alphas_cumprod_for(config)
    train_sigmas = ((1 - abar) / abar) ** 0.5                       # sigma_t for t = 0 .. T-1
    # 1. timesteps by the configured spacing, sigma at each by linear interpolation in t
    timesteps = spaced_timesteps(config, n, integer=False)
    sigmas = np.interp(timesteps, np.arange(len(train_sigmas)), train_sigmas)
    # 2. Karras et al. eq. 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho,
    #    between the first and last sigma of step 1; timesteps follow the sigmas
    if karras:
        inv_max, inv_min = sigmas[0] ** (1 / KARRAS_RHO), sigmas[-1] ** (1 / KARRAS_RHO)
        sigmas = (inv_max + np.linspace(0, 1, n) * (inv_min - inv_max)) ** KARRAS_RHO
        timesteps = sigma_to_t(sigmas, np.log(train_sigmas))
    return timesteps, np.append(sigmas, 0.0)


def predicted_x0(config: SchedulerConfig, out: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """x_0 from the model output at noise level sigma (x is unscaled: x_0 + sigma eps)."""
    if config.prediction_type == "epsilon":
        return x - sigma * out
    if config.prediction_type == "v_prediction":
        # v = sqrt(abar) eps - sqrt(1 - abar) x_0 on the scaled input (Salimans & Ho 2022, sec. 4)
        return -sigma / (sigma ** 2 + 1) ** 0.5 * out + x / (sigma ** 2 + 1)
    return out


class EulerScheduler:
    NOISY = False   # whether step draws noise

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.alphas_cumprod = alphas_cumprod_for(config)
        self.timesteps: np.ndarray | None = None
        self.sigmas: np.ndarray | None = None
        self.init_noise_sigma = self._init_sigma(np.sqrt((1 - self.alphas_cumprod) / self.alphas_cumprod))

    def _init_sigma(self, sigmas: np.ndarray) -> float:
        """Std of the first sample: sigma_max, or sqrt(sigma_max^2 + 1) for leading spacing (diffusers)."""
        smax = float(sigmas.max())
        return smax if self.config.timestep_spacing != "leading" else (smax ** 2 + 1) ** 0.5

    def _schedule(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return euler_schedule(self.config, n, karras=self.config.use_karras_sigmas)

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps, self.sigmas = self._schedule(check_steps(num_inference_steps, self.config))
        self.init_noise_sigma = self._init_sigma(self.sigmas)

    def _sigma(self, t, who: str) -> tuple[int, float]:
        i = timestep_index(self.timesteps, t, f"{type(self).__name__}.{who}")
        return i, float(self.sigmas[i])

    def scale_model_input(self, sample, t) -> np.ndarray:
        """c_in(sigma) = 1 / sqrt(sigma^2 + 1) (Karras et al. table 1, VP column)."""
        _, sigma = self._sigma(t, "scale_model_input")
        x = np.asarray(sample)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        return (x.astype(np.float64) / (sigma ** 2 + 1) ** 0.5).astype(dtype)

    def add_noise(self, original, noise, t) -> np.ndarray:
        """x_0 + sigma(t) noise, for img2img: t is one of ``timesteps`` (after set_timesteps)."""
        _, sigma = self._sigma(t, "add_noise")
        noise, x0, dtype = as_float64(noise, original, ("noise", "original"), f"{type(self).__name__}.add_noise")
        return (x0 + sigma * noise).astype(dtype)

    def step(self, model_output, t, sample, *, rng: np.random.Generator | None = None,
             noise: np.ndarray | None = None) -> np.ndarray:
        """One Euler step sigma_i -> sigma_{i+1}; deterministic (rng and noise are not used)."""
        i, sigma = self._sigma(t, "step")
        out, x, dtype = as_float64(model_output, sample, ("model_output", "sample"), f"{type(self).__name__}.step")
        # 1. denoised D(x; sigma) from the model output
        x0 = predicted_x0(self.config, out, x, sigma)
        # 2. d_i = (x_i - D(x_i; sigma_i)) / sigma_i (Algorithm 2, line 7)
        d = (x - x0) / sigma
        # 3. x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i (line 8)
        return (x + (self.sigmas[i + 1] - sigma) * d).astype(dtype)

    def step_coefficients(self, t) -> StepCoefficients:
        """``step`` at t as x_next = cx x + cout out (+ cnoise z for the ancestral subclass)."""
        return probe_linear_step(self, t, self.NOISY)
