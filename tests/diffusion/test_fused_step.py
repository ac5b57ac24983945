"""The fused guidance + scheduler update: each linear scheduler's step_coefficients reproduce its own
step, and the denoising loop with a fused update follows the unfused loop."""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.diffusion.loop import denoise
from edgegen.diffusion.ops import Ops
from edgegen.schedulers import make_scheduler

LINEAR = ("ddim", "ddpm", "euler", "euler_a")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("name", LINEAR)
def test_coefficients_reproduce_the_step(name, prediction):
    if name == "euler_a" and prediction == "sample":
        pytest.skip("euler_a refuses sample prediction")
    s = make_scheduler(name, {"clip_sample": False, "prediction_type": prediction, "num_train_timesteps": 1000})
    s.set_timesteps(7)
    rng = np.random.default_rng(1)
    for t in s.timesteps:
        x, out, z = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
        c = s.step_coefficients(t)
        expected = s.step(out, t, x, noise=z)
        got = c.cx * x + c.cout * out + (c.cnoise * z if c.noisy else 0)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_clipping_configs_are_not_fused(name):
    s = make_scheduler(name, {"clip_sample": True})
    s.set_timesteps(3)
    assert s.step_coefficients(s.timesteps[0]) is None


def _denoiser(x, t, cond):   # a smooth stand-in for a UNet that depends on the condition
    return np.tanh(x * 0.5 + cond.reshape(len(x), 1, 1, 1)) * 0.9


@pytest.mark.parametrize("name", LINEAR + ("dpmpp_2m",))
def test_fused_loop_follows_the_unfused_loop(name):
    def run(fused):
        s = make_scheduler(name, {"clip_sample": False})
        s.set_timesteps(5)
        rng = np.random.default_rng(7)
        x = (rng.standard_normal((1, 4, 6, 6)) * s.init_noise_sigma).astype(np.float32)
        steps = denoise(_denoiser, s, x, cond=np.array([0.3]), uncond=np.array([-0.2]), guidance_scale=4.0,
                        rng=rng, fused=fused)
        return [st.latents for st in steps]
    plain, fused = run(None), run(Ops("ref").guided_update)   # the kernel's NumPy reference
    for a, b in zip(plain, fused):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
