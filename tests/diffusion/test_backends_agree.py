"""The whole text-to-image pipeline on edgegen's own kernels (native) and on onnxruntime, against
diffusers' StableDiffusionPipeline given the same starting noise, and against each other; the
fused guidance + scheduler kernel on the way. Tiny random components (tests/diffusion/tiny_sd.py)."""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.diffusion.pipeline import load_pipeline
from edgegen.diffusion.png import save_png

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")
from diffusion.tiny_sd import final_step, make_tiny_sd, unit_image  # noqa: E402

# On [0, 1] images. Native: float32 kernels (GEMM sums in another order than PyTorch's) and the
# fused float32 update; onnxruntime: its own float32 kernels. Measured: native 3e-6 against the
# torch backend.
IMAGE_ATOL = 5e-4


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return make_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd", seed=0)


@pytest.fixture(scope="module")
def onnx_dir(sd, tmp_path_factory):
    from edgegen.converters.diffusers_onnx import export_diffusers_onnx
    out = tmp_path_factory.mktemp("onnx") / "sd-onnx"
    export_diffusers_onnx(sd, out, quant="fp32", progress=False)
    return out


@pytest.fixture(scope="module")
def pipes(sd, onnx_dir):
    torch.set_num_threads(1)
    return {"native": load_pipeline(sd, threads=2), "onnxruntime": load_pipeline(onnx_dir, threads=2),
            "torch": load_pipeline(sd, backend="torch", threads=1)}


def test_backends_are_picked_by_folder(pipes):
    assert pipes["native"].backend == "native" and pipes["native"].fused is not None
    assert pipes["onnxruntime"].backend == "onnxruntime"
    assert type(pipes["native"].unet).__name__ == "NativeUNet"


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_pipeline_matches_diffusers(sd, pipes, backend, scheduler):
    steps, seed, prompt, negative = 3, 11, "a red cat", "blue"
    pipe = pipes[backend]
    ours = final_step(pipe.steps(prompt, negative_prompt=negative, steps=steps, scheduler=scheduler, guidance_scale=7.5,
                             seed=seed))
    noise = np.random.default_rng(seed).standard_normal((1, 4, 8, 8), dtype=np.float32)
    theirs_pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd, safety_checker=None,
                                                                    requires_safety_checker=False)
    if scheduler == "euler":
        theirs_pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(theirs_pipe.scheduler.config)
    theirs_pipe.set_progress_bar_config(disable=True)
    theirs = theirs_pipe(prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=7.5,
                         latents=torch.from_numpy(noise), output_type="np").images
    assert theirs.std() > 0.01
    np.testing.assert_allclose(unit_image(pipe, ours.latents), theirs, atol=IMAGE_ATOL, rtol=0)


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m", "ddpm"])
def test_backends_agree_with_the_torch_reference(pipes, scheduler):
    """Ancestral and multistep schedulers (the same seeded noise in every backend)."""
    images = {}
    for name, pipe in pipes.items():
        last = final_step(pipe.steps("a red cat", negative_prompt="", steps=4, scheduler=scheduler, seed=3))
        images[name] = unit_image(pipe, last.latents)
    np.testing.assert_allclose(images["native"], images["torch"], atol=IMAGE_ATOL, rtol=0)
    np.testing.assert_allclose(images["onnxruntime"], images["torch"], atol=IMAGE_ATOL, rtol=0)


def test_native_same_seed_same_png_bytes(pipes, tmp_path):
    pipe = pipes["native"]
    paths = []
    for i in range(2):
        image = pipe.decode(final_step(pipe.steps("a red cat", steps=2, scheduler="euler_a", seed=9)).latents)[0]
        paths.append(save_png(image, tmp_path / f"{i}.png", {"prompt": "a red cat", "seed": "9"}))
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_an_onnx_folder_is_refused_by_the_other_backends(onnx_dir):
    from edgegen.errors import UsageError
    with pytest.raises(UsageError, match="only the onnxruntime backend"):
        load_pipeline(onnx_dir, backend="native")
