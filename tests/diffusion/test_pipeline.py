"""The image pipeline (edgegen/diffusion/pipeline.py, folder.py) over the PyTorch reference components,
against diffusers' StableDiffusionPipeline / StableDiffusionImg2ImgPipeline given the same noise;
the CLIP tokenizer against transformers'; tiled VAE decoding; class-conditional pixel models; the CLI."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import types

import numpy as np
import pytest

from edgegen.diffusion.folder import read_clip_tokenizer, read_folder
from edgegen.diffusion.pipeline import ImagePipeline, RemainingSteps, decode_tiled, img2img_start, load_pipeline, tile_starts
from edgegen.errors import EdgegenError, ModelFileError, UnsupportedModelError, UsageError

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("PIL")
from diffusion.tiny_sd import NUM_CLASSES, final_step, make_tiny_pixel_unet, make_tiny_sd, unit_image  # noqa: E402

IMAGE_ATOL = 2e-4   # on [0, 1] images: float32 PyTorch vs our float64 scheduler arithmetic


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return make_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd", seed=0)


@pytest.fixture(scope="module")
def pipe(sd):
    return load_pipeline(sd, backend="torch")


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    return make_tiny_pixel_unet(tmp_path_factory.mktemp("tiny") / "pixel", class_conditional=True, seed=0)


def _diffusers_pipe(cls, sd, scheduler):
    p = cls.from_pretrained(sd, safety_checker=None, requires_safety_checker=False)
    if scheduler == "euler":
        p.scheduler = diffusers.EulerDiscreteScheduler.from_config(p.scheduler.config)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_text_to_image_matches_diffusers(sd, pipe, scheduler):
    steps, seed, prompt, negative = 3, 11, "the cat and the dog", "dog"
    ours = final_step(pipe.steps(prompt, negative_prompt=negative, steps=steps, scheduler=scheduler,
                             guidance_scale=7.5, seed=seed))
    noise = np.random.default_rng(seed).standard_normal((1, 4, 8, 8), dtype=np.float32)   # the pipeline's draw
    theirs = _diffusers_pipe(diffusers.StableDiffusionPipeline, sd, scheduler)(
        prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=7.5,
        latents=torch.from_numpy(noise), output_type="np").images
    assert ours.total == steps and ours.latents.shape == (1, 4, 8, 8) and theirs.std() > 0.01
    np.testing.assert_allclose(unit_image(pipe, ours.latents), theirs, atol=IMAGE_ATOL, rtol=0)
    uint8 = pipe.decode(ours.latents)
    assert uint8.dtype == np.uint8 and uint8.shape == (1, 16, 16, 3)
    assert np.abs(uint8.astype(int) - np.round(theirs * 255).astype(int)).max() <= 1


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_image_to_image_matches_diffusers(sd, pipe, scheduler, monkeypatch):
    from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img as img2img
    from PIL import Image
    steps, strength, seed = 4, 0.6, 5
    init = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    ours = final_step(pipe.steps("the cat", negative_prompt="", steps=steps, scheduler=scheduler, seed=seed,
                             init_image=init, strength=strength))
    # diffusers, made deterministic as ours: the VAE's mean instead of a sample, and our noise
    noise = np.random.default_rng(seed).standard_normal((1, 4, 8, 8), dtype=np.float32)
    monkeypatch.setattr(img2img, "retrieve_latents", lambda out, generator=None: out.latent_dist.mode())
    monkeypatch.setattr(img2img, "randn_tensor", lambda shape, **kw: torch.from_numpy(noise))
    theirs = _diffusers_pipe(diffusers.StableDiffusionImg2ImgPipeline, sd, scheduler)(
        "the cat", image=init, strength=strength, num_inference_steps=steps, guidance_scale=7.5,
        output_type="np").images
    assert ours.total == 2   # int(4 * 0.6) of the 4 steps run
    np.testing.assert_allclose(unit_image(pipe, ours.latents), theirs, atol=IMAGE_ATOL, rtol=0)


@pytest.mark.parametrize("steps,strength", [(10, 0.3), (7, 0.5), (4, 1.0), (20, 0.75), (3, 0.34)])
def test_img2img_timestep_slicing_matches_diffusers(pipe, steps, strength):
    theirs_sched = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler_config)
    theirs_sched.set_timesteps(steps)
    get_timesteps = diffusers.StableDiffusionImg2ImgPipeline.get_timesteps   # reads only self.scheduler
    ts, n = get_timesteps(types.SimpleNamespace(scheduler=theirs_sched), steps, strength, "cpu")
    ours = pipe.scheduler("euler")
    ours.set_timesteps(steps)
    kept = RemainingSteps(ours, img2img_start(steps, strength)).timesteps
    assert len(kept) == n
    np.testing.assert_allclose(kept, ts.numpy(), rtol=1e-6)


def test_img2img_refuses_a_strength_that_leaves_no_step(pipe):
    with pytest.raises(UsageError, match="strength"):
        img2img_start(3, 0.2)
    with pytest.raises(UsageError, match="strength"):
        img2img_start(3, 0.0)


def test_tokenizer_gives_transformers_ids(sd):
    ours = read_clip_tokenizer(sd / "tokenizer")
    slow = transformers.CLIPTokenizer.from_pretrained(sd / "tokenizer")
    fast = transformers.CLIPTokenizerFast.from_pretrained(sd / "tokenizer")
    prompts = ["the cat and the dog", "  The   CAT,\tand\nthe DOG!!  ", "a photo of an astronaut on mars",
               "it's 3 o'clock, 42 cats", "", "the cat " * 60]
    ids, cut = ours(prompts)
    for ref in (slow, fast):
        expected = ref(prompts, padding="max_length", max_length=77, truncation=True).input_ids
        np.testing.assert_array_equal(ids, np.array(expected))
    assert ids.dtype == np.int64 and cut == ["the cat " * 60]


def test_long_prompt_is_truncated_with_a_warning(pipe):
    with pytest.warns(UserWarning, match="truncated"):
        pipe.steps("the cat " * 60, steps=1, guidance_scale=1.0)


def test_same_seed_same_image_and_different_seed_differs(pipe, tmp_path):
    from edgegen.diffusion.png import save_png
    images = [pipe.generate("the dog", steps=2, seed=s, scheduler="euler_a") for s in (4, 4, 5)]
    paths = [save_png(np.asarray(im), tmp_path / f"{k}.png", {"seed": "4"}) for k, im in enumerate(images)]
    data = [p.read_bytes() for p in paths]
    assert data[0] == data[1] and np.asarray(images[0]).shape == (16, 16, 3)
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[2]))


def test_pixel_class_conditional(pixel):
    pipe = load_pipeline(pixel, backend="torch")
    assert pipe.class_names == tuple(str(i) for i in range(NUM_CLASSES))
    a = final_step(pipe.steps("3", steps=3, seed=7, guidance_scale=1.0)).latents
    b = final_step(pipe.steps("3", steps=3, seed=7, guidance_scale=1.0)).latents
    c = final_step(pipe.steps("4", steps=3, seed=7, guidance_scale=1.0)).latents
    assert a.shape == (1, 3, 8, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)   # the class reaches the UNet
    assert pipe.decode(a).shape == (1, 8, 8, 3)
    with pytest.raises(UsageError, match="0, 1, 2"):
        pipe.steps("a cat", steps=2)
    with pytest.warns(UserWarning, match="no null class"):
        pipe.steps("3", steps=2, guidance_scale=7.5)


def test_pixel_class_names_and_null_class_from_class_labels_json(pixel, tmp_path):
    folder = shutil.copytree(pixel, tmp_path / "pixel")
    names = [f"c{i}" for i in range(NUM_CLASSES - 1)] + ["null"]
    (folder / "class_labels.json").write_text(json.dumps({"labels": names, "null_class": NUM_CLASSES - 1}))
    pipe = load_pipeline(folder, backend="torch")
    assert pipe.class_names == tuple(names) and pipe.null_class == NUM_CLASSES - 1
    calls, unet = [], pipe.unet

    class Spy:
        num_class_embeds, in_channels, sample_size = unet.num_class_embeds, unet.in_channels, unet.sample_size
        cross_attention_dim = None

        def __call__(self, x, t, cond):
            calls.append(cond.copy())
            return unet(x, t, cond)
    pipe.unet = Spy()
    final_step(pipe.steps("c2", steps=2, seed=0, guidance_scale=3.0))
    assert len(calls) == 2 and all(list(c) == [NUM_CLASSES - 1, 2] for c in calls)   # uncond, cond


class _PointwiseDecoder:
    """A VAE decoder stand-in whose output pixel depends on one latent only (nearest upsampling)."""
    latent_channels, scale_factor = 4, 2

    def __call__(self, z):
        return np.repeat(np.repeat(np.tanh(z[:, :3] * 0.7), 2, axis=2), 2, axis=3).astype(np.float32)


def test_tiled_decoding_equals_untiled_for_a_local_decoder():
    z = np.random.default_rng(1).standard_normal((2, 4, 21, 30), dtype=np.float32)
    dec, tile = _PointwiseDecoder(), 8
    whole, tiled = dec(z), decode_tiled(dec, z, tile)
    cover = np.zeros(z.shape[2:], int)
    for y in tile_starts(21, tile, tile - tile // 4):
        for x in tile_starts(30, tile, tile - tile // 4):
            cover[y:y + tile, x:x + tile] += 1
    once = np.repeat(np.repeat(cover == 1, 2, axis=0), 2, axis=1)
    assert cover.min() >= 1 and once.any() and (~once).any()
    np.testing.assert_array_equal(tiled[:, :, once], whole[:, :, once])     # one tile: its output exactly
    np.testing.assert_allclose(tiled, whole, atol=1e-6, rtol=0)              # overlaps: a convex blend


def test_tiled_decoding_stays_close_with_the_tiny_vae(pipe):
    latents = np.random.default_rng(2).standard_normal((1, 4, 16, 16), dtype=np.float32) * 0.18215
    whole = pipe.decode_float(latents)
    tiled = pipe.decode_float(latents, tile=12)   # tiles at 0 and 4: overlap 8 of 16
    assert tiled.shape == whole.shape == (1, 3, 32, 32)
    # the decoder's group norms and mid-block attention see only the tile, so it differs, boundedly:
    # measured mean 0.14 std(whole), max 0.28 on this random VAE (whose statistics vary more across
    # a 16x16 latent than a trained VAE's across a 64x64 one)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.2 * whole.std() and diff.max() < 0.5
    np.testing.assert_array_equal(pipe.decode_float(latents, tile=16), whole)   # one tile = untiled


def test_usage_errors(pipe):
    with pytest.raises(UsageError, match=r"--size.*multiples of 4"):
        pipe.steps("the cat", width=18, height=16)
    with pytest.raises(UsageError, match="ddim, euler, euler_a"):
        pipe.steps("the cat", scheduler="plms")
    no_encoder = ImagePipeline({k: v for k, v in [("unet", pipe.unet), ("text_encoder", pipe.text_encoder),
                                                  ("vae_decoder", pipe.vae_decoder)]},
                               pipe.tokenizer, pipe.scheduler_config)
    with pytest.raises(UsageError, match="vae_encoder"):
        no_encoder.steps("the cat", init_image=np.zeros((16, 16, 3), np.float32))
    with pytest.raises(UsageError, match="backend"):
        load_pipeline("nowhere", backend="tensorflow")


def test_folder_errors(sd, tmp_path):
    folder = shutil.copytree(sd, tmp_path / "sd")
    shutil.rmtree(folder / "vae")
    with pytest.raises(ModelFileError, match="vae"):
        read_folder(folder)
    index = json.loads((sd / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNet3DConditionModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedModelError, match="UNet3DConditionModel"):
        read_folder(folder)
    with pytest.raises(ModelFileError, match="model_index.json"):
        read_folder(tmp_path / "missing")


# -- the CLI ------------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> int:
    """``edgegen image ...`` through edgegen.cli.main where it is wired in, else the same glue here."""
    from edgegen import cli
    if "image" in cli.COMMANDS:
        return cli.main(argv)
    from edgegen.cli_image import add_image_parser, cmd_image
    parser = argparse.ArgumentParser(prog="edgegen")
    add_image_parser(parser.add_subparsers(dest="command", required=True))
    try:
        cmd_image(parser.parse_args(argv))
    except EdgegenError as e:
        print(f"edgegen: error: {e}", file=sys.stderr)
        return 1
    return 0


@pytest.mark.parametrize("extra,message", [(["--size", "16by16"], "--size"), (["--size", "18x16"], "--size"),
                                           (["--scheduler", "plms"], "--scheduler")])
def test_cli_errors_are_one_line(sd, tmp_path, capsys, extra, message):
    rc = run_cli(["image", str(sd), "the cat", "-o", str(tmp_path / "x.png"), "--backend", "torch", *extra])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and message in err and err.startswith("edgegen: error:")
    assert not (tmp_path / "x.png").exists()


def test_cli_missing_model_folder(tmp_path, capsys):
    rc = run_cli(["image", str(tmp_path / "nope"), "the cat", "--backend", "torch"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and "nope" in err


def test_cli_writes_png_with_metadata(sd, tmp_path, capsys):
    from edgegen.diffusion.png import read_png_text
    import edgegen
    out = tmp_path / "cat.png"
    rc = run_cli(["image", str(sd), "the cat", "-o", str(out), "--steps", "2", "--scheduler", "euler",
                  "--seed", "42", "--negative", "dog", "--guidance", "5", "--size", "24x16",
                  "--backend", "torch", "--vae-tile", "8", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.out.strip() == str(out) and "s/step" in captured.err
    text = read_png_text(out)
    assert text == {"prompt": "the cat", "negative_prompt": "dog", "seed": "42", "steps": "2", "scheduler": "euler",
                    "guidance": "5", "size": "24x16", "model": "sd", "backend": "torch",
                    "software": f"edgegen {edgegen.__version__}"}
    from PIL import Image
    with Image.open(out) as im:
        assert im.size == (24, 16) and im.mode == "RGB"
