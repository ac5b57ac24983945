"""DPM-Solver++(2M) (plain and Karras) and LCM against diffusers' schedulers built from the same
config dicts: timesteps equal, init_noise_sigma / scale_model_input equal, and a full sampling loop
with a fixed fake model gives the same final sample to 1e-5 of its largest value (diffusers computes
in float32, we in float64). LCM gets the same noise draws on both sides.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.errors import UsageError
from edgegen.schedulers import make_scheduler, scheduler_for_config
from edgegen.schedulers.base import SchedulerConfig
from edgegen.schedulers.dpmpp_2m import DPMPP2MScheduler, check_config_dict
from edgegen.schedulers.lcm import LCMScheduler

SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "steps_offset": 1}
LINEAR = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
CONFIGS = {
    "sd-leading": {**SD, "timestep_spacing": "leading"},
    "sd-trailing": {**SD, "timestep_spacing": "trailing"},
    "sd-linspace": {**SD, "timestep_spacing": "linspace"},
    "linear-linspace": {**LINEAR, "timestep_spacing": "linspace"},
}
SHAPE = (2, 4, 5, 3)
RTOL = 1e-5   # of max |reference|
# diffusers builds betas and alphas_cumprod in float32; for linear betas that puts its sigma_min
# (sqrt(beta_1 / (1 - beta_1)), the last Karras sigma) 1.3e-4 off the exact value, which moves the
# final sample by up to 1.4e-5 relative. Against an exact (float64) schedule we agree to 1e-6.
RTOL_KARRAS_LINEAR = 3e-5


def fake_model(x: np.ndarray, t: int) -> np.ndarray:
    """A fixed, smooth, t-dependent 'denoiser' output, in the sample's dtype."""
    out = np.tanh(0.7 * x) * (0.5 + t / 1000.0) + 0.1 * np.cos(0.01 * t + np.arange(x.size).reshape(x.shape))
    return out.astype(x.dtype)


def start_sample(dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(SHAPE).astype(dtype)


def assert_close(ours: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    err = np.abs(ours.astype(np.float64) - ref).max()
    assert err <= rtol * np.abs(ref).max(), f"max |err| {err:.3g} vs max |ref| {np.abs(ref).max():.3g}"


@pytest.fixture(scope="module")
def diffusers():
    pytest.importorskip("torch")
    return pytest.importorskip("diffusers", exc_type=ImportError)


def run_pair(ours, ref, n: int, noises: list[np.ndarray] | None = None):
    """Set n steps on both, check schedules, then run the same loop; return (ours, ref) final samples."""
    import torch
    ours.set_timesteps(n)
    ref.set_timesteps(n)
    assert ours.timesteps.dtype == np.int64
    np.testing.assert_array_equal(ours.timesteps, ref.timesteps.numpy())
    assert ours.init_noise_sigma == float(ref.init_noise_sigma)
    x = y = start_sample() * ours.init_noise_sigma
    for k, t in enumerate(ours.timesteps):
        xin = ours.scale_model_input(x, t)
        np.testing.assert_array_equal(xin, ref.scale_model_input(torch.from_numpy(x), torch.tensor(t)).numpy())
        yin = ref.scale_model_input(torch.from_numpy(y), torch.tensor(t)).numpy()
        kw = {"noise": noises[k]} if noises is not None else {}
        x = ours.step(fake_model(xin, int(t)), t, x, **kw)
        y = ref.step(torch.from_numpy(fake_model(yin, int(t))), torch.tensor(t), torch.from_numpy(y)).prev_sample.numpy()
    return x, y


@pytest.mark.parametrize("karras", [False, True], ids=["plain", "karras"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("n", [1, 2, 4, 20, 25])
def test_dpmpp_2m_matches_diffusers(diffusers, cfg, prediction, karras, n):
    d = {**CONFIGS[cfg], "prediction_type": prediction, "use_karras_sigmas": karras}
    ours = DPMPP2MScheduler(SchedulerConfig.from_dict(d))
    rtol = RTOL_KARRAS_LINEAR if karras and d["beta_schedule"] == "linear" else RTOL
    assert_close(*run_pair(ours, diffusers.DPMSolverMultistepScheduler(**d), n), rtol)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("cfg", ["sd-leading", "linear-linspace"])
@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_lcm_matches_diffusers(diffusers, monkeypatch, cfg, prediction, n):
    import torch
    d = {**CONFIGS[cfg], "prediction_type": prediction, "original_inference_steps": 50}
    rng = np.random.default_rng(1)
    noises = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]
    drawn = iter(noises[:n - 1])   # the last step adds no noise
    monkeypatch.setattr("diffusers.schedulers.scheduling_lcm.randn_tensor",
                        lambda shape, **kw: torch.from_numpy(next(drawn)))
    ours = LCMScheduler(SchedulerConfig.from_dict(d))
    assert_close(*run_pair(ours, diffusers.LCMScheduler(**d), n, noises))
    assert next(drawn, None) is None, "diffusers drew a different number of noises"


@pytest.mark.parametrize("name", ["dpmpp_2m", "lcm"])
def test_add_noise_matches_diffusers(diffusers, name):
    import torch
    d = CONFIGS["sd-leading"]
    if name == "dpmpp_2m":
        d = {**d, "use_karras_sigmas": True}
    ours = make_scheduler(name + ("_karras" if name == "dpmpp_2m" else ""), d)
    ref = (diffusers.DPMSolverMultistepScheduler if name == "dpmpp_2m" else diffusers.LCMScheduler)(**d)
    ours.set_timesteps(10)
    ref.set_timesteps(10)
    x0, eps = start_sample(), start_sample()[::-1].copy()
    t = ours.timesteps[[3, 7]]
    got = ours.add_noise(x0, eps, t)
    want = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), torch.from_numpy(t)).numpy()
    assert_close(got, want)


def test_registry_picks_karras():
    plain = make_scheduler("dpmpp_2m", {**SD, "use_karras_sigmas": True})
    karras = make_scheduler("dpmpp_2m_karras", SD)
    assert not plain.config.use_karras_sigmas and karras.config.use_karras_sigmas
    from_json = scheduler_for_config({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True, **SD})
    assert isinstance(from_json, DPMPP2MScheduler) and from_json.config.use_karras_sigmas
    karras.set_timesteps(4)
    # Karras et al. eq. 5 with rho = 7 between the training schedule's extreme sigmas, then the final 0
    s = np.sqrt((1 - karras.alphas_cumprod) / karras.alphas_cumprod)
    lo, hi = s[0] ** (1 / 7), s[-1] ** (1 / 7)
    np.testing.assert_allclose(karras.sigmas, [*(hi + np.arange(4) / 3 * (lo - hi)) ** 7, 0.0], rtol=1e-12)
    assert isinstance(scheduler_for_config({"_class_name": "LCMScheduler", **SD}), LCMScheduler)


@pytest.mark.parametrize("cls", [DPMPP2MScheduler, LCMScheduler])
def test_misuse_names_the_problem(cls):
    s = cls(SchedulerConfig.from_dict(SD))
    x = start_sample()
    with pytest.raises(UsageError, match="before set_timesteps"):
        s.step(x, 999, x, noise=x)
    s.set_timesteps(4)
    t0, t1 = s.timesteps[:2]
    with pytest.raises(UsageError, match="not in the schedule"):
        s.step(x, t0 + 1, x, noise=x)
    with pytest.raises(UsageError, match=r"model_output: expected the sample's shape"):
        s.step(x[:1], t0, x, noise=x)
    s.step(x, t0, x, noise=x)
    with pytest.raises(UsageError, match=f"out of order: step 1 expects t={t1}, found t={t0}"):
        s.step(x, t0, x, noise=x)
    if cls is LCMScheduler:
        with pytest.raises(UsageError, match="pass rng="):
            s.step(x, t1, x)
        with pytest.raises(UsageError, match="noise: expected shape"):
            s.step(x, t1, x, noise=x[:1])
    with pytest.raises(UsageError, match="num_inference_steps"):
        s.set_timesteps(0)
    s.set_timesteps(4)   # restarts: the first timestep is accepted again, state is fresh
    assert s.step(x, t0, x, noise=x).dtype == np.float32


def test_lcm_rejects_more_steps_than_distilled():
    s = LCMScheduler(SchedulerConfig.from_dict({**SD, "original_inference_steps": 50}))
    with pytest.raises(UsageError, match="at most original_inference_steps=50"):
        s.set_timesteps(51)


def test_dpmpp_config_check_rejects_other_variants():
    check_config_dict({"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero"})
    with pytest.raises(UsageError, match="algorithm_type='sde-dpmsolver\\+\\+' is not supported"):
        check_config_dict({"algorithm_type": "sde-dpmsolver++"})
    with pytest.raises(UsageError, match="solver_order=3"):
        check_config_dict({"solver_order": 3})


def test_float16_sample_keeps_dtype():
    s = make_scheduler("dpmpp_2m_karras", SD)
    s.set_timesteps(3)
    x = start_sample(np.float16)
    for t in s.timesteps:
        x = s.step(fake_model(x.astype(np.float64), int(t)), t, x)
    assert x.dtype == np.float16 and np.isfinite(x).all()


def test_config_asking_for_another_dpm_solver_variant_is_refused():
    from edgegen.errors import UsageError
    from edgegen.schedulers import scheduler_for_config
    with pytest.raises(UsageError, match="solver_order=3"):
        scheduler_for_config({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3})
