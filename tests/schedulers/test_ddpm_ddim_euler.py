"""DDPM, DDIM, Euler and Euler ancestral against diffusers' classes built from the same config.

Parity loops run both schedulers side by side with one fixed fake denoiser and the same noise
(diffusers' ``randn_tensor`` is patched to hand out the arrays ours receive as ``noise=``) and
compare timesteps, init_noise_sigma, every scaled model input and the final sample.
Diffusers keeps its noise schedule in float32; ``reference(..., float64_schedule=True)`` swaps in
the float64 one (the same betas, checked) so that the comparison measures the algorithm, at 1e-5 of
the sample's scale; ``test_against_stock_float32_diffusers`` checks the shipped float32 one.
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from edgegen.errors import UsageError
from edgegen.schedulers import make_scheduler, scheduler_for_config
from edgegen.schedulers.base import SchedulerConfig, betas_for
from edgegen.schedulers.ddim import DDIMScheduler
from edgegen.schedulers.ddpm import DDPMScheduler
from edgegen.schedulers.euler import EulerScheduler
from edgegen.schedulers.euler_ancestral import EulerAncestralScheduler

OURS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "euler": EulerScheduler, "euler_a": EulerAncestralScheduler}
THEIRS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
          "euler_a": "EulerAncestralDiscreteScheduler"}
MODULES = {"ddpm": "scheduling_ddpm", "ddim": "scheduling_ddim", "euler_a": "scheduling_euler_ancestral_discrete"}
BETAS = {"linear": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
         "sd": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1),
         "cosine": dict(beta_schedule="squaredcos_cap_v2")}
SHAPE = (2, 4, 5, 3)
W = np.random.default_rng(1).standard_normal(SHAPE)


def fake_model(x: np.ndarray, t: float) -> np.ndarray:
    """A fixed, smooth, t-dependent 'denoiser'."""
    return 0.9 * np.tanh(x) + 0.3 * np.sin(float(t) / 97.0) * W


def full_config(**kw) -> dict:
    """Every field, so that diffusers' class defaults (clip_sample=True, ...) never differ from ours."""
    return dataclasses.asdict(SchedulerConfig(**kw))


def reference(name: str, cfg: dict, float64_schedule: bool = True):
    try:
        import torch
        import diffusers
    except ImportError as e:   # also a diffusers whose huggingface_hub is too old to import
        pytest.skip(f"the reference needs diffusers and torch (pip install diffusers): {e}")
    cls = getattr(diffusers, THEIRS[name])
    accepted = inspect.signature(cls.__init__).parameters
    ref = cls.from_config({k: v for k, v in cfg.items() if k in accepted})
    if float64_schedule:
        # the same betas (test_betas_match_diffusers) without float32's rounding; 1 - beta near the
        # cosine schedule's cap of 0.999 loses 1e-5 of itself in float32
        ref.alphas_cumprod = torch.cumprod(1 - torch.from_numpy(betas_for(SchedulerConfig.from_dict(cfg))), 0)
        if name == "ddim":
            ref.final_alpha_cumprod = torch.tensor(1.0) if cfg["set_alpha_to_one"] else ref.alphas_cumprod[0]
    return ref


def assert_close(ours, ref, tol, what=""):
    ref = np.asarray(ref, dtype=np.float64)
    err = np.abs(np.asarray(ours, dtype=np.float64) - ref).max() / max(np.abs(ref).max(), 1e-12)
    assert err <= tol, f"{what}: max error {err:.2e} of the reference's scale > {tol:.0e}"


def run_both(name, cfg, n, monkeypatch, *, eta=0.0, float64_schedule=True, tol=1e-5, dtype=np.float64):
    import torch
    ours, ref = OURS[name](SchedulerConfig.from_dict(cfg)), reference(name, cfg, float64_schedule)
    ours.set_timesteps(n)
    ref.set_timesteps(n)
    assert_close(ours.timesteps.astype(np.float32), ref.timesteps.numpy(), 1e-6, "timesteps")
    if name in ("ddpm", "ddim"):
        assert ours.timesteps.dtype == np.int64 and np.array_equal(ours.timesteps, ref.timesteps.numpy())
    assert ours.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6 if float64_schedule else 1e-5)
    rng = np.random.default_rng(7)
    noises = rng.standard_normal((n,) + SHAPE)
    current, drawn = [None], []                  # diffusers' noise: the array ours gets at this step
    if name in MODULES:
        import importlib
        module = importlib.import_module(f"diffusers.schedulers.{MODULES[name]}")
        monkeypatch.setattr(module, "randn_tensor", lambda shape, **kw: drawn.append(1) or current[0])
    x_T = rng.standard_normal(SHAPE)
    x_ours = (x_T * ours.init_noise_sigma).astype(dtype)
    x_ref = torch.from_numpy((x_T * float(ref.init_noise_sigma)).astype(dtype))
    for k, (t, t_ref) in enumerate(zip(ours.timesteps, ref.timesteps)):
        current[0] = torch.from_numpy(noises[k].astype(dtype))
        in_ref = ref.scale_model_input(x_ref, t_ref)
        assert_close(ours.scale_model_input(x_ref.numpy(), t), in_ref.numpy(), 1e-6 if float64_schedule else tol,
                     f"scale_model_input t={t}")
        extra = {"eta": eta} if name == "ddim" else {}
        x_ours = ours.step(fake_model(ours.scale_model_input(x_ours, t), t).astype(dtype), t, x_ours,
                           noise=noises[k], **extra)
        if eta:
            extra["variance_noise"] = current[0]
        out_ref = torch.from_numpy(fake_model(in_ref.numpy(), float(t_ref)).astype(dtype))
        x_ref = ref.step(out_ref, t_ref, x_ref, **extra).prev_sample
    assert x_ours.dtype == dtype
    assert_close(x_ours, x_ref.numpy(), tol, "final sample")
    stochastic = {"ddpm": int(np.sum(ours.timesteps > 0)), "euler_a": n}.get(name, 0)
    assert len(drawn) == stochastic, "diffusers drew noise at steps where ours did not (or the reverse)"
    return ours, ref


@pytest.mark.parametrize("n", [1, 4, 20, 50])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("betas", list(BETAS))
@pytest.mark.parametrize("name", list(OURS))
def test_matches_diffusers(name, betas, prediction, spacing, n, monkeypatch):
    cfg = full_config(**BETAS[betas], prediction_type=prediction, timestep_spacing=spacing)
    # diffusers' Euler steps round the sample to float32; for v_prediction under the cosine schedule
    # (sigma_max = 2e4, so |x| ~ 2e4) that alone moves the result by up to 9e-4. With those casts
    # removed from diffusers' source the two agree to 2e-7 here too (checked by hand).
    float32_limited = name.startswith("euler") and betas == "cosine" and prediction == "v_prediction"
    run_both(name, cfg, n, monkeypatch, tol=2e-3 if float32_limited else 1e-5)


@pytest.mark.parametrize("name, options", [
    ("ddpm", dict(clip_sample=True, clip_sample_range=0.5)), ("ddim", dict(clip_sample=True)),
    ("ddpm", dict(variance_type="fixed_large")), ("ddpm", dict(variance_type="fixed_small_log")),
    ("ddim", dict(set_alpha_to_one=False)), ("euler", dict(use_karras_sigmas=True)),
    ("euler", dict(use_karras_sigmas=True, prediction_type="v_prediction", timestep_spacing="leading")),
    ("euler_a", dict(use_karras_sigmas=True)),   # ignored, as diffusers' class has no such option
    ("ddpm", dict(prediction_type="sample")), ("ddim", dict(prediction_type="sample")),
    ("euler", dict(prediction_type="sample")),
])
@pytest.mark.parametrize("n", [4, 25])
def test_options_match_diffusers(name, options, n, monkeypatch):
    run_both(name, full_config(**{**BETAS["sd"], **options}), n, monkeypatch)


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_eta_matches_diffusers(eta, spacing, monkeypatch):
    run_both("ddim", full_config(**BETAS["sd"], timestep_spacing=spacing), 20, monkeypatch, eta=eta)


@pytest.mark.parametrize("name", list(OURS))
@pytest.mark.parametrize("betas", list(BETAS))
def test_against_stock_float32_diffusers(name, betas, monkeypatch):
    # float32 inputs to ours, diffusers' own float32 schedule: cosine's sigmas near t = 0 differ by
    # up to 3e-4 between float32 and float64, hence the wider bound there
    run_both(name, full_config(**BETAS[betas], timestep_spacing="trailing"), 20, monkeypatch,
             float64_schedule=False, tol=1e-3 if betas == "cosine" else 1e-4, dtype=np.float32)


@pytest.mark.parametrize("name", list(OURS))
def test_add_noise_matches_diffusers(name):
    import torch
    cfg = full_config(**BETAS["sd"])
    ours, ref = OURS[name](SchedulerConfig.from_dict(cfg)), reference(name, cfg)
    ours.set_timesteps(10)
    ref.set_timesteps(10)
    x0, noise = np.random.default_rng(3).standard_normal((2,) + SHAPE)
    for t, t_ref in zip(ours.timesteps[[0, 4, 9]], ref.timesteps[[0, 4, 9]]):
        want = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), t_ref.reshape(1)).numpy()
        assert_close(ours.add_noise(x0, noise, t), want, 1e-6, f"add_noise t={t}")


def test_betas_match_diffusers():
    for betas in BETAS.values():
        ref = reference("ddpm", full_config(**betas))
        assert_close(betas_for(SchedulerConfig(**betas)), ref.betas.numpy(), 1e-6, str(betas))


@pytest.mark.parametrize("name", ["ddpm", "euler_a"])
def test_rng_is_the_same_as_its_draws_passed_as_noise(name):
    a, b = (make_scheduler(name, full_config(**BETAS["sd"])) for _ in range(2))
    a.set_timesteps(5)
    b.set_timesteps(5)
    x = np.ones(SHAPE, np.float32)
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    xa = xb = x
    for t in a.timesteps:
        xa = a.step(fake_model(xa, t), t, xa, rng=rng_a)
        draws = t > 0 or name == "euler_a"              # DDPM adds no noise on its t = 0 step
        xb = b.step(fake_model(xb, t), t, xb, noise=rng_b.standard_normal(SHAPE) if draws else None)
    np.testing.assert_array_equal(xa, xb)
    assert xa.dtype == np.float32


def test_registry_returns_these_classes():
    cfg = full_config(**BETAS["sd"])
    assert type(make_scheduler("euler_a", cfg)) is EulerAncestralScheduler
    for diffusers_name, cls in [("DDIMScheduler", DDIMScheduler), ("DDPMScheduler", DDPMScheduler),
                                ("EulerDiscreteScheduler", EulerScheduler),
                                ("EulerAncestralDiscreteScheduler", EulerAncestralScheduler)]:
        s = scheduler_for_config({"_class_name": diffusers_name, "_diffusers_version": "0.42.1", **cfg})
        assert type(s) is cls and s.config == SchedulerConfig(**cfg)


@pytest.mark.parametrize("name", list(OURS))
def test_misuse_names_the_problem(name):
    s = make_scheduler(name, full_config())
    x = np.zeros(SHAPE, np.float32)
    with pytest.raises(UsageError, match="call set_timesteps"):
        s.step(x, 999, x, noise=x)
    s.set_timesteps(4)
    t = s.timesteps[0]
    with pytest.raises(UsageError, match=r"t=998 is not one of this scheduler's timesteps \[750, 500, 250, 0\]"):
        s.step(x, 998, x, noise=x)
    with pytest.raises(UsageError, match=r"model_output has shape \(1, 4\) but sample has shape"):
        s.step(np.zeros((1, 4)), t, x, noise=x)
    with pytest.raises(UsageError, match="num_inference_steps"):
        s.set_timesteps(0)
    if name in ("ddpm", "euler_a"):
        with pytest.raises(UsageError, match="pass rng=np.random.default_rng"):
            s.step(x, t, x)
        with pytest.raises(UsageError, match=r"noise: expected shape \(2, 4, 5, 3\)"):
            s.step(x, t, x, noise=np.zeros(3))
    with pytest.raises(UsageError, match="add_noise"):
        s.add_noise(x, x, 1000)


def test_unsupported_options_name_the_field():
    with pytest.raises(UsageError, match="variance_type: DDPMScheduler supports fixed_small"):
        DDPMScheduler(SchedulerConfig(variance_type="learned_range"))
    with pytest.raises(UsageError, match="prediction_type: EulerAncestralScheduler supports epsilon"):
        EulerAncestralScheduler(SchedulerConfig(prediction_type="sample"))
    s = DDIMScheduler(SchedulerConfig())
    s.set_timesteps(2)
    with pytest.raises(UsageError, match="eta must be >= 0"):
        s.step(np.zeros(3), s.timesteps[0], np.zeros(3), eta=-1.0)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m", "lcm"])
def test_a_minimal_config_means_what_it_means_to_diffusers(name):
    """Fields a scheduler_config.json leaves out take the diffusers class's defaults."""
    import dataclasses
    diffusers = pytest.importorskip("diffusers")
    from edgegen.schedulers import DIFFUSERS_NAMES, make_scheduler
    cls = next(c for c, n in DIFFUSERS_NAMES.items() if n == name)
    theirs = getattr(diffusers, cls)().config
    ours = make_scheduler(name, {}).config
    for f in dataclasses.fields(ours):
        if f.name in theirs and f.name != "variance_type":   # DPM's variance_type (None) is not read
            assert getattr(ours, f.name) == theirs[f.name], f.name
