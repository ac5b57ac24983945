"""What every noise scheduler shares: the diffusers config fields, the noise schedule, the interface.

A scheduler is one algorithm per file (ddpm.py, ddim.py, ...), NumPy only, with diffusers'
interface and behaviour, so a diffusers ``scheduler_config.json`` configures it and its
``step`` outputs match diffusers' for the same inputs:

    s = Scheduler(SchedulerConfig.from_dict(json.load(f)))
    s.set_timesteps(20)
    x = rng.standard_normal(shape) * s.init_noise_sigma
    for t in s.timesteps:
        eps = denoiser(s.scale_model_input(x, t), t)
        x = s.step(eps, t, x, rng=rng)

Randomness (DDPM, Euler ancestral, LCM) comes from the ``rng`` passed to ``step`` or, to
reproduce another implementation exactly, a ``noise`` array of the sample's shape.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np

from edgegen.errors import UsageError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class SchedulerConfig:
    """The fields of a diffusers scheduler_config.json the schedulers read (others are ignored)."""
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True
    use_karras_sigmas: bool = False
    variance_type: str = "fixed_small"          # DDPM
    original_inference_steps: int = 50          # LCM
    timestep_scaling: float = 10.0              # LCM

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise UsageError(f"beta_schedule: expected one of {', '.join(BETA_SCHEDULES)}, found {self.beta_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise UsageError(f"prediction_type: expected one of {', '.join(PREDICTION_TYPES)}, found {self.prediction_type!r}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise UsageError(f"timestep_spacing: expected one of {', '.join(TIMESTEP_SPACINGS)}, found {self.timestep_spacing!r}")
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps < 1:
            raise UsageError(f"num_train_timesteps: expected an integer >= 1, found {self.num_train_timesteps!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SchedulerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def betas_for(config: SchedulerConfig) -> np.ndarray:
    """The training noise schedule beta_1..beta_T (float64), as diffusers builds it."""
    n = config.num_train_timesteps
    if config.beta_schedule == "linear":
        return np.linspace(config.beta_start, config.beta_end, n, dtype=np.float64)
    if config.beta_schedule == "scaled_linear":
        return np.linspace(config.beta_start ** 0.5, config.beta_end ** 0.5, n, dtype=np.float64) ** 2
    # squaredcos_cap_v2 (Nichol & Dhariwal 2021, eq. 17), each beta capped at 0.999
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=np.float64)


def alphas_cumprod_for(config: SchedulerConfig) -> np.ndarray:
    return np.cumprod(1.0 - betas_for(config))


def check_steps(n: int, config: SchedulerConfig) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= config.num_train_timesteps:
        raise UsageError(f"num_inference_steps: expected an integer between 1 and {config.num_train_timesteps}, found {n!r}")
    return n


def draw_noise(shape: tuple[int, ...], rng: np.random.Generator | None, noise: np.ndarray | None) -> np.ndarray:
    """Standard normal noise of ``shape``: the given ``noise`` (checked) or drawn from ``rng``."""
    if noise is not None:
        noise = np.asarray(noise)
        if noise.shape != shape:
            raise UsageError(f"noise: expected shape {shape}, found {noise.shape}")
        return noise
    if rng is None:
        raise UsageError("this scheduler's step adds noise: pass rng=np.random.default_rng(seed) (or noise=)")
    return rng.standard_normal(shape)


def spaced_timesteps(config: SchedulerConfig, n: int, *, integer: bool = True) -> np.ndarray:
    """The n inference timesteps, descending, by ``config.timestep_spacing`` (diffusers' rules; see
    table 2 of Lin et al. 2023, arXiv:2305.08891). ``integer=False`` keeps linspace's fractions (Euler)."""
    T = config.num_train_timesteps
    if config.timestep_spacing == "linspace":
        ts = np.linspace(0, T - 1, n)[::-1]
        ts = ts.round() if integer else ts
    elif config.timestep_spacing == "leading":
        ts = (np.arange(n) * (T // n))[::-1] + config.steps_offset
    else:  # trailing
        ts = np.round(np.arange(T, 0, -T / n)) - 1
    return ts.astype(np.int64) if integer else ts.astype(np.float64)


def timestep_index(timesteps: np.ndarray | None, t, who: str) -> int:
    """Where ``t`` sits in ``timesteps``; a UsageError if set_timesteps has not run or t is not there."""
    if timesteps is None:
        raise UsageError(f"{who}: no timesteps yet; call set_timesteps(num_inference_steps) first")
    try:
        hits = np.flatnonzero(timesteps == float(t)) if np.ndim(t) == 0 else ()
    except (TypeError, ValueError):
        hits = ()
    if len(hits) == 0:
        shown = ", ".join(f"{x:g}" for x in timesteps[:8]) + (", ..." if len(timesteps) > 8 else "")
        raise UsageError(f"{who}: t={t!r} is not one of this scheduler's timesteps [{shown}]; "
                         f"loop over scheduler.timesteps and pass each value")
    return int(hits[0])


def as_float64(a, b, names: tuple[str, str], who: str):
    """Both arrays as float64 after checking their shapes agree; the dtype to hand back (b's)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise UsageError(f"{who}: {names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; they must match")
    dtype = b.dtype if np.issubdtype(b.dtype, np.floating) else np.dtype(np.float64)
    return a.astype(np.float64), b.astype(np.float64), dtype


def add_noise_at(alphas_cumprod: np.ndarray, original, noise, t) -> np.ndarray:
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al. eq. 4), for img2img; ``t`` one
    integer timestep, or an integer array of one per batch row."""
    noise, original, dtype = as_float64(noise, original, ("noise", "original"), "add_noise")
    ts = np.asarray(t)
    n = len(alphas_cumprod)
    if isinstance(t, bool) or ts.dtype.kind not in "iu" or np.any(ts < 0) or np.any(ts >= n):
        raise UsageError(f"add_noise: t must be integer timesteps in [0, {n}) (one, or one per batch row), found {t!r}")
    abar = alphas_cumprod[ts].reshape(ts.shape + (1,) * (original.ndim - ts.ndim))
    return (abar ** 0.5 * original + (1 - abar) ** 0.5 * noise).astype(dtype)


def schedule_position(timesteps: np.ndarray, t, who: str) -> int:
    """Index of scheduled timestep ``t`` (the second one if repeated, as diffusers picks)."""
    if len(timesteps) == 0:
        raise UsageError(f"{who} called before set_timesteps: call set_timesteps(num_inference_steps) first")
    found = np.flatnonzero(timesteps == t)
    if len(found) == 0:
        raise UsageError(f"timestep {t} is not in the schedule {timesteps.tolist()}: pass t from scheduler.timesteps")
    return int(found[1] if len(found) > 1 else found[0])


def next_step_index(timesteps: np.ndarray, step_index: int | None, t, who: str) -> int:
    """The index of this step for a multistep scheduler that must walk its timesteps in order:
    the first step may start anywhere (img2img starts midway), later ones must follow on."""
    if step_index is None:
        return schedule_position(timesteps, t, who)
    if step_index >= len(timesteps):
        raise UsageError(f"all {len(timesteps)} steps are done: call set_timesteps again to sample anew")
    if timesteps[step_index] != t:
        raise UsageError(f"timestep out of order: step {step_index} expects t={timesteps[step_index]}, found t={t}; "
                         "step through scheduler.timesteps in order (set_timesteps restarts)")
    return step_index


class DiscreteVPScheduler:
    """What DDPM and DDIM share: the training schedule abar_t, integer timesteps, a model input
    that needs no scaling, and the forward process for img2img. Subclasses add ``step``."""
    init_noise_sigma = 1.0

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.alphas_cumprod = alphas_cumprod_for(config)          # abar_t, float64
        self.timesteps: np.ndarray | None = None

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = spaced_timesteps(self.config, check_steps(num_inference_steps, self.config))

    def scale_model_input(self, sample, t) -> np.ndarray:
        timestep_index(self.timesteps, t, f"{type(self).__name__}.scale_model_input")
        return np.asarray(sample)

    def add_noise(self, original, noise, t) -> np.ndarray:
        return add_noise_at(self.alphas_cumprod, original, noise, t)


class StepCoefficients(NamedTuple):
    """A step that is linear in its inputs: x_next = cx * x + cout * model_output + cnoise * z,
    with z drawn (rng.standard_normal(x.shape), as ``step`` draws it) only where ``noisy``."""
    cx: float
    cout: float
    cnoise: float
    noisy: bool


def probe_linear_step(scheduler, t, noisy: bool, **step_kwargs) -> StepCoefficients:
    """The coefficients of a stateless scheduler's ``step`` at ``t``, read off the step itself on
    one-element inputs (unit x, unit output, unit noise in turn), so they are the tested step's
    own float64 arithmetic. Only for steps that are linear (no clipping, no history)."""
    zero, one = np.zeros(1), np.ones(1)

    def run(out, x, z):
        return float(scheduler.step(out, t, x, noise=z, **step_kwargs)[0])
    cnoise = run(zero, zero, one) if noisy else 0.0
    return StepCoefficients(run(zero, one, zero), run(one, zero, zero), cnoise, noisy)
