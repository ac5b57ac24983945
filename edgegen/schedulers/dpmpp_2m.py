"""DPM-Solver++(2M): the multistep second-order solver in log-SNR time (Lu et al. 2022,
"DPM-Solver++", arXiv:2211.01095, Algorithm 2), as diffusers' DPMSolverMultistepScheduler runs it
with algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
final_sigmas_type="zero". ``use_karras_sigmas`` gives "dpmpp_2m_karras" (Karras et al. 2022, eq. 5).

Notation: sigma = sqrt((1 - alpha_bar) / alpha_bar) (diffusers' ``sigmas``); the VP pair is
alpha_t = 1 / sqrt(1 + sigma^2), sigma_t = sigma * alpha_t; lambda = log(alpha_t / sigma_t) = -log sigma.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from edgegen.errors import UsageError
from edgegen.schedulers.base import SchedulerConfig, alphas_cumprod_for, check_steps, next_step_index, schedule_position

KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5

# diffusers DPMSolverMultistepScheduler fields this class does not read, with the only value it runs
# (SchedulerConfig drops unknown keys, so a caller holding the raw json can check it here).
FIXED_FIELDS: dict[str, Any] = {
    "algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
    "lower_order_final": True, "euler_at_final": False, "final_sigmas_type": "zero",
    "thresholding": False, "use_lu_lambdas": False, "use_exponential_sigmas": False,
    "use_beta_sigmas": False, "use_flow_sigmas": False, "rescale_betas_zero_snr": False,
    "trained_betas": None, "variance_type": None, "use_dynamic_shifting": False,
}


def check_config_dict(d: Mapping[str, Any], source: str = "scheduler_config.json") -> None:
    """Raise if a diffusers DPMSolverMultistepScheduler config asks for a variant this class does not run."""
    for key, want in FIXED_FIELDS.items():
        if key in d and d[key] != want:
            raise UsageError(f"{source}: {key}={d[key]!r} is not supported by dpmpp_2m (expected {want!r})")
    if d.get("lambda_min_clipped", -float("inf")) != -float("inf"):
        raise UsageError(f"{source}: lambda_min_clipped={d['lambda_min_clipped']!r} is not supported (expected -inf)")


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = KARRAS_RHO) -> np.ndarray:
    """Karras et al. 2022, eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho."""
    ramp = np.linspace(0.0, 1.0, n)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def sigma_to_t(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep of each sigma: linear interpolation in log sigma (as diffusers)."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_sigmas) - 2)
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0, 1)
    return (1 - w) * low + w * (low + 1)


class DPMPP2MScheduler:
    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.alphas_cumprod = alphas_cumprod_for(config)                               # [T] float64
        self.train_sigmas = np.sqrt((1 - self.alphas_cumprod) / self.alphas_cumprod)   # [T] ascending in t
        self.init_noise_sigma = 1.0
        self.timesteps = np.zeros(0, dtype=np.int64)
        self.sigmas = np.zeros(0)         # [n + 1]: sigma at each timestep, then the final 0
        self._step_index: int | None = None
        self._prev_x0: np.ndarray | None = None   # data prediction of the previous step (the "M" state)

    def set_timesteps(self, num_inference_steps: int) -> None:
        n = check_steps(num_inference_steps, self.config)
        T, c = self.config.num_train_timesteps, self.config
        if c.use_karras_sigmas:   # the spacing setting is ignored: timesteps follow the Karras sigmas
            sigmas = karras_sigmas(self.train_sigmas[0], self.train_sigmas[-1], n)
            t = sigma_to_t(sigmas, np.log(self.train_sigmas))
            timesteps = t if c.beta_schedule == "squaredcos_cap_v2" else t.round()
        else:                     # Lin et al. 2023 (arXiv:2305.08891), Table 2
            if c.timestep_spacing == "linspace":
                timesteps = np.linspace(0, T - 1, n + 1).round()[::-1][:-1]
            elif c.timestep_spacing == "leading":
                timesteps = (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1] + c.steps_offset
            else:  # trailing
                timesteps = np.arange(T, 0, -T / n).round() - 1
            sigmas = self.train_sigmas[timesteps.astype(np.int64)]
        self.timesteps = timesteps.astype(np.int64)
        self.sigmas = np.concatenate([sigmas, [0.0]])   # final_sigmas_type "zero": the last step lands on x0
        self._step_index, self._prev_x0 = None, None

    def scale_model_input(self, sample: np.ndarray, t: int) -> np.ndarray:
        return np.asarray(sample)   # the VP sample is the model input; nothing to scale

    def _position(self, t: int, what: str = "step") -> int:
        return schedule_position(self.timesteps, t, f"DPMPP2MScheduler.{what}")

    def _index(self, t: int) -> int:
        return next_step_index(self.timesteps, self._step_index, t, "DPMPP2MScheduler.step")

    def _alpha_sigma(self, i: int) -> tuple[float, float]:
        alpha = 1.0 / np.sqrt(1.0 + self.sigmas[i] ** 2)
        return alpha, self.sigmas[i] * alpha

    def _x0(self, model_output: np.ndarray, sample: np.ndarray, i: int) -> np.ndarray:
        """Data prediction x_theta(x_t, t) from the model's parameterization (Algorithm 2's x_theta)."""
        alpha, sigma = self._alpha_sigma(i)
        if self.config.prediction_type == "epsilon":
            return (sample - sigma * model_output) / alpha
        if self.config.prediction_type == "v_prediction":
            return alpha * sample - sigma * model_output
        return model_output   # "sample"

    def step(self, model_output, t, sample, *, rng=None, noise=None) -> np.ndarray:
        """One solver step from timestep t to the next one; deterministic (rng and noise are unused)."""
        sample, model_output = np.asarray(sample), np.asarray(model_output)
        if model_output.shape != sample.shape:
            raise UsageError(f"model_output: expected the sample's shape {sample.shape}, found {model_output.shape}")
        i = self._index(int(t))
        x = sample.astype(np.float64)
        x0 = self._x0(model_output.astype(np.float64), x, i)
        alpha_t, sigma_t = self._alpha_sigma(i + 1)
        _, sigma_s0 = self._alpha_sigma(i)
        # 1. exp(-h), h = lambda_t - lambda_s0 = log(sigma_s0 / sigma_t) in diffusers' sigmas (0 at the end)
        exp_neg_h = self.sigmas[i + 1] / self.sigmas[i]
        last = i == len(self.timesteps) - 1
        if self._prev_x0 is None or last:
            # 2a. first order (Algorithm 2, first step; DDIM): x_t = sigma_t/sigma_s x_s - alpha_t (e^-h - 1) x0
            D = x0
        else:
            # 2b. second order: r = h_prev / h, D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1} (Algorithm 2, midpoint)
            h = np.log(self.sigmas[i] / self.sigmas[i + 1])
            r = np.log(self.sigmas[i - 1] / self.sigmas[i]) / h
            D = x0 + (0.5 / r) * (x0 - self._prev_x0)
        prev = (sigma_t / sigma_s0) * x - alpha_t * (exp_neg_h - 1.0) * D
        self._prev_x0, self._step_index = x0, i + 1
        return prev.astype(sample.dtype)

    def add_noise(self, original: np.ndarray, noise: np.ndarray, t) -> np.ndarray:
        """alpha_t x0 + sigma_t noise at scheduled timestep(s) t (a scalar, or one per batch row)."""
        original, noise = np.asarray(original), np.asarray(noise)
        if noise.shape != original.shape:
            raise UsageError(f"noise: expected the original's shape {original.shape}, found {noise.shape}")
        ts = np.asarray(t, dtype=np.int64)
        idx = np.array([self._position(int(tt), "add_noise") for tt in ts.ravel()]).reshape(ts.shape)
        sig = self.sigmas[idx].reshape(ts.shape + (1,) * (original.ndim - ts.ndim))
        alpha = 1.0 / np.sqrt(1.0 + sig ** 2)
        return (alpha * original.astype(np.float64) + sig * alpha * noise).astype(original.dtype)
