"""Text-to-image, image-to-image and class-conditional pixel diffusion over components (components.py).

    pipe = load_pipeline("sd-folder", backend="native", threads=4)
    for step in pipe.steps("a cat", steps=20, seed=42):      # a generator: draw progress, or break to cancel
        bar.update()
    image = pipe.decode(step.latents)[0]                      # uint8 (H, W, 3)
    pipe.generate("a cat", steps=20, seed=42).save("cat.png") # the same in one call

Behaves as diffusers' StableDiffusionPipeline / StableDiffusionImg2ImgPipeline given the same
initial noise, with these choices:
- Randomness: ``np.random.default_rng(seed)``; the initial latents are its first
  ``standard_normal(shape, float32)`` draw times ``init_noise_sigma`` (img2img: the noise mixed into
  the init latents); stochastic schedulers (euler_a, ddpm, lcm) then draw from the same rng.
- Guidance: classifier-free guidance runs when guidance_scale > 1 (as diffusers), with the negative
  prompt ("" by default) as the unconditional input. A class-conditional pixel UNet2DModel has no
  unconditional input unless class_labels.json names a null class; without one, guidance is skipped
  with a warning. An unconditional pixel model ignores the prompt.
- img2img: the init image is encoded to the *mean* of the VAE's latent distribution (diffusers
  samples it; the mean is deterministic and the sample's std is tiny for SD's VAE), times
  scaling_factor; the first ``steps - int(steps * strength)`` timesteps are skipped and the latents
  are noised to the first kept one (diffusers' get_timesteps and prepare_latents).
"""
from __future__ import annotations

import importlib
import os
import warnings
from typing import Any, Iterator, Sequence

import numpy as np

from edgegen.diffusion.folder import DEFAULT_SCALING_FACTOR, read_folder
from edgegen.diffusion.loop import DenoiseStep, GuidedUpdate, denoise
from edgegen.diffusion.ops import Ops
from edgegen.errors import UsageError
from edgegen.schedulers import DIFFUSERS_NAMES, SCHEDULERS, make_scheduler, scheduler_for_config

# backend -> (module, loader(folder, threads) -> components dict); imported when asked for
LOADERS: dict[str, tuple[str, str]] = {
    "native": ("edgegen.diffusion.native", "load_native_components"),
    "onnxruntime": ("edgegen.diffusion.onnx_components", "load_onnx_components"),
    "torch": ("edgegen.diffusion.torch_components", "load_torch_components"),
}
DEFAULT_GUIDANCE = 7.5


class RemainingSteps:
    """A scheduler seen from step ``start`` on (img2img): ``denoise`` walks these timesteps; the
    scheduler keeps its whole schedule, so its sigmas and step indices stay right."""

    def __init__(self, scheduler, start: int):
        self.scheduler = scheduler
        self.timesteps = scheduler.timesteps[start:]
        self.init_noise_sigma = scheduler.init_noise_sigma

    def scale_model_input(self, sample, t):
        return self.scheduler.scale_model_input(sample, t)

    def step(self, model_output, t, sample, *, rng=None):
        return self.scheduler.step(model_output, t, sample, rng=rng)

    def step_coefficients(self, t):
        coefficients = getattr(self.scheduler, "step_coefficients", None)
        return coefficients(t) if coefficients is not None else None


def img2img_start(steps: int, strength: float) -> int:
    """How many timesteps img2img skips: diffusers' ``steps - min(int(steps * strength), steps)``."""
    if not 0.0 < strength <= 1.0:
        raise UsageError(f"strength: expected a number in (0, 1], found {strength!r}")
    start = steps - min(int(steps * strength), steps)
    if start >= steps:
        raise UsageError(f"strength {strength} with {steps} steps leaves no step to run (steps * strength < 1); "
                         "raise --strength or --steps")
    return start


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float (B, C, H, W) in [-1, 1] -> uint8 (B, H, W, 3), as diffusers' postprocess + numpy_to_pil;
    a one-channel (grey) image is repeated into RGB."""
    unit = np.clip(image.astype(np.float32) / 2 + 0.5, 0, 1)
    out = np.round(unit.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return out.repeat(3, axis=3) if out.shape[3] == 1 else out


def tile_starts(n: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering [0, n): every ``stride``, the last one flush with the end."""
    if n <= tile:
        return [0]
    return list(range(0, n - tile, stride)) + [n - tile]


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """Blend weights along one tile side: rising over the ``before`` overlap, falling over ``after``, else 1."""
    w = np.ones(length, np.float32)
    p = np.arange(length, dtype=np.float32) + 0.5
    if before:
        w = np.minimum(w, p / before)
    if after:
        w = np.minimum(w, p[::-1] / after)
    return w


def decode_tiled(decoder, z: np.ndarray, tile: int) -> np.ndarray:
    """VAE-decode ``z`` (B, C, h, w) in overlapping tile x tile latent tiles (overlap tile // 4), blended
    linearly in the overlaps; pixels one tile covers are that tile's output exactly."""
    f = decoder.scale_factor
    B, _, h, w = z.shape
    stride = tile - tile // 4
    ys, xs = tile_starts(h, tile, stride), tile_starts(w, tile, stride)
    out = np.zeros((B, 3, h * f, w * f), np.float32)
    total = np.zeros((h * f, w * f), np.float32)
    for axis_y, y in enumerate(ys):
        th = min(tile, h)
        wy = _ramp(th * f, (ys[axis_y - 1] + th - y) * f if axis_y else 0,
                   (y + th - ys[axis_y + 1]) * f if axis_y + 1 < len(ys) else 0)
        for axis_x, x in enumerate(xs):
            tw = min(tile, w)
            wx = _ramp(tw * f, (xs[axis_x - 1] + tw - x) * f if axis_x else 0,
                       (x + tw - xs[axis_x + 1]) * f if axis_x + 1 < len(xs) else 0)
            weight = wy[:, None] * wx[None, :]
            part = decoder(np.ascontiguousarray(z[:, :, y:y + th, x:x + tw]))
            out[:, :, y * f:(y + th) * f, x * f:(x + tw) * f] += weight * part
            total[y * f:(y + th) * f, x * f:(x + tw) * f] += weight
    return out / total


def image_size(image) -> tuple[int, int]:
    """(width, height) of a PIL image or an HxWx3 array."""
    return image.size if not isinstance(image, np.ndarray) else (image.shape[1], image.shape[0])


def _as_list(value: str | Sequence[str], what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(s, str) for s in items):
        raise UsageError(f"{what}: expected a string or a non-empty list of strings, found {value!r}")
    return items


class ImagePipeline:
    """Diffusion over components: {"unet", and as the model has them "text_encoder", "vae_decoder",
    "vae_encoder"}, a tokenizer (folder.ClipTokenizer) for text models, a scheduler_config.json dict."""

    def __init__(self, components: dict[str, Any], tokenizer, scheduler_config: dict, *,
                 scaling_factor: float = DEFAULT_SCALING_FACTOR, class_names: Sequence[str] = (),
                 null_class: int | None = None, latent_multiple: int = 1, model: str = "", backend: str = "",
                 fused: GuidedUpdate | None = None):
        if "unet" not in components:
            raise UsageError("ImagePipeline: components must include a 'unet'")
        self.unet = components["unet"]
        self.text_encoder = components.get("text_encoder")
        self.vae_decoder = components.get("vae_decoder")
        self.vae_encoder = components.get("vae_encoder")
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.default_scheduler = scheduler_for_config(self.scheduler_config)   # checks the config early
        self.scaling_factor = scaling_factor
        self.class_names, self.null_class = tuple(class_names), null_class
        self.latent_multiple = latent_multiple
        self.model, self.backend = model, backend
        self.fused = fused   # the guidance + scheduler update in one pass (loop.denoise's fused=), or None
        self.text_conditioned = getattr(self.unet, "cross_attention_dim", None) is not None
        if self.text_conditioned and (self.text_encoder is None or tokenizer is None):
            raise UsageError("ImagePipeline: a text-conditioned UNet needs a text_encoder component and a tokenizer")

    @property
    def scale_factor(self) -> int:
        """Image side / latent side (1 for pixel models)."""
        return self.vae_decoder.scale_factor if self.vae_decoder is not None else 1

    @property
    def size_multiple(self) -> int:
        return self.scale_factor * self.latent_multiple

    def scheduler(self, name: str | None = None):
        if name is None:
            return scheduler_for_config(self.scheduler_config)
        if name not in SCHEDULERS:
            raise UsageError(f"--scheduler: expected one of {', '.join(SCHEDULERS)}, found {name!r}")
        return make_scheduler(name, self.scheduler_config)

    def scheduler_name(self, name: str | None = None) -> str:
        """``name``, or the name of the folder's own scheduler."""
        if name is not None:
            return name
        own = DIFFUSERS_NAMES[self.scheduler_config["_class_name"]]   # checked in __init__
        return "dpmpp_2m_karras" if own == "dpmpp_2m" and self.scheduler_config.get("use_karras_sigmas") else own

    def _size(self, width: int | None, height: int | None) -> tuple[int, int]:
        default = self.unet.sample_size * self.scale_factor
        width, height = width or default, height or default
        m = self.size_multiple
        if width % m or height % m or width <= 0 or height <= 0:
            raise UsageError(f"--size: width and height must be positive multiples of {m} for this model "
                             f"(VAE factor {self.scale_factor} x UNet factor {self.latent_multiple}), "
                             f"found {width}x{height}")
        return width, height

    # -- conditioning --------------------------------------------------------------------------------
    def _encode_text(self, texts: list[str]) -> np.ndarray:
        ids, cut = self.tokenizer(texts)
        for text in cut:
            warnings.warn(f"the prompt is longer than the text encoder's {self.tokenizer.max_length} tokens and was "
                          f"truncated: {text[:60]!r}...", UserWarning, stacklevel=4)
        return self.text_encoder(ids)

    def _class_condition(self, prompts: list[str], guidance_scale: float):
        if not getattr(self.unet, "num_class_embeds", None):
            if any(prompts):
                warnings.warn("this model is unconditional: the prompt is ignored", UserWarning, stacklevel=4)
            return None, None
        bad = [p for p in prompts if p not in self.class_names]
        if bad:
            raise UsageError(f"prompt: this model draws one of the classes {', '.join(self.class_names)}; "
                             f"found {bad[0]!r}")
        cond = np.array([self.class_names.index(p) for p in prompts], np.int64)
        if guidance_scale > 1 and self.null_class is None:
            warnings.warn("guidance is ignored: this class-conditional model has no null class "
                          "(class_labels.json names none)", UserWarning, stacklevel=4)
        if guidance_scale <= 1 or self.null_class is None:
            return cond, None
        return cond, np.full(len(prompts), self.null_class, np.int64)

    def condition(self, prompts: list[str], negatives: list[str], guidance_scale: float):
        """(cond, uncond) for the UNet: text states, class labels, or None; uncond None when unguided."""
        if not self.text_conditioned:
            return self._class_condition(prompts, guidance_scale)
        cond = self._encode_text(prompts)
        return cond, (self._encode_text(negatives) if guidance_scale > 1 else None)

    # -- image to image -------------------------------------------------------------------------------
    def _image_array(self, image, width: int, height: int) -> np.ndarray:
        """A PIL image or float HxWx3 in [0, 1] -> float32 (1, 3, H, W) in [-1, 1], resized (Lanczos,
        as diffusers' image processor) to width x height where it differs."""
        from edgegen.diffusion.png import pil_image, to_pil
        if isinstance(image, np.ndarray):
            image = np.asarray(image, np.float32)
            if image.ndim != 3 or image.shape[2] != 3:
                raise UsageError(f"init_image: expected an RGB image (H, W, 3), found shape {image.shape}")
            if image.shape[:2] == (height, width):
                return (image.transpose(2, 0, 1)[None] * 2 - 1).astype(np.float32)
            image = to_pil(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), resample=pil_image().Resampling.LANCZOS)
        return (np.asarray(image, np.float32).transpose(2, 0, 1)[None] / 255.0 * 2 - 1).astype(np.float32)

    def init_latents(self, init_image, width: int, height: int, batch: int) -> np.ndarray:
        """The (unnoised) latents of the init image: VAE mean times scaling_factor; pixels for pixel models."""
        x = self._image_array(init_image, width, height)
        if self.vae_decoder is None:
            return np.repeat(x, batch, axis=0)
        if self.vae_encoder is None:
            raise UsageError("init_image: this model has no vae_encoder component, so it cannot start from an image")
        moments = self.vae_encoder(x)
        mean = moments[:, : self.vae_encoder.latent_channels]
        return np.repeat(mean * np.float32(self.scaling_factor), batch, axis=0).astype(np.float32)

    # -- the run ---------------------------------------------------------------------------------------
    def steps(self, prompt: str | Sequence[str], *, negative_prompt: str | Sequence[str] = "", steps: int = 20,
              scheduler: str | None = None, guidance_scale: float = DEFAULT_GUIDANCE, seed: int = 0,
              width: int | None = None, height: int | None = None, init_image=None, strength: float = 0.8,
              tile: int | None = None) -> Iterator[DenoiseStep]:
        """Check the arguments and encode the prompts now; return the denoising generator (the last
        step's latents are the result; ``decode`` them). ``tile`` is accepted for symmetry with
        generate and ignored here."""
        prompts = _as_list(prompt, "prompt")
        negatives = _as_list(negative_prompt, "negative_prompt")
        if len(negatives) == 1:
            negatives = negatives * len(prompts)
        if len(negatives) != len(prompts):
            raise UsageError(f"negative_prompt: expected one or {len(prompts)} (one per prompt), found {len(negatives)}")
        sched = self.scheduler(scheduler)
        if init_image is not None and width is None and height is None:
            width, height = image_size(init_image)
        width, height = self._size(width, height)
        cond, uncond = self.condition(prompts, negatives, guidance_scale)
        sched.set_timesteps(steps)
        rng = np.random.default_rng(seed)
        f = self.scale_factor
        channels = self.vae_decoder.latent_channels if self.vae_decoder is not None else self.unet.in_channels
        shape = (len(prompts), channels, height // f, width // f)
        if init_image is None:
            latents = rng.standard_normal(shape, dtype=np.float32) * np.float32(sched.init_noise_sigma)
            return denoise(self.unet, sched, latents, cond=cond, uncond=uncond, guidance_scale=guidance_scale, rng=rng,
                           fused=self.fused)
        start = img2img_start(steps, strength)
        x0 = self.init_latents(init_image, width, height, len(prompts))
        noise = rng.standard_normal(shape, dtype=np.float32)
        remaining = RemainingSteps(sched, start)
        latents = sched.add_noise(x0, noise, remaining.timesteps[0]).astype(np.float32)
        return denoise(self.unet, remaining, latents, cond=cond, uncond=uncond, guidance_scale=guidance_scale, rng=rng,
                           fused=self.fused)

    def decode_float(self, latents: np.ndarray, tile: int | None = None) -> np.ndarray:
        """Latents -> float32 image (B, 3, H, W) in about [-1, 1] (pixel models: the sample itself)."""
        if self.vae_decoder is None:
            return np.asarray(latents, np.float32)
        z = (np.asarray(latents, np.float32) / np.float32(self.scaling_factor)).astype(np.float32)
        if tile is not None:
            if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
                raise UsageError(f"--vae-tile: expected a positive latent tile side (e.g. 32), found {tile!r}")
            if max(z.shape[2:]) > tile:
                return decode_tiled(self.vae_decoder, z, tile)
        return self.vae_decoder(z)

    def decode(self, latents: np.ndarray, tile: int | None = None) -> np.ndarray:
        """Latents -> uint8 images (B, H, W, 3)."""
        return to_uint8(self.decode_float(latents, tile))

    def generate(self, prompt: str | Sequence[str], **options):
        """Run ``steps`` to the end and decode: a PIL image, or a list of them for a list of prompts."""
        from edgegen.diffusion.png import to_pil
        last = None
        for last in self.steps(prompt, **options):
            pass
        images = [to_pil(im) for im in self.decode(last.latents, options.get("tile"))]
        return images[0] if isinstance(prompt, str) else images


def load_pipeline(path, backend: str | None = None, threads: int | None = None) -> ImagePipeline:
    """An ImagePipeline over a diffusers folder (or an ONNX export of one for backend "onnxruntime").
    backend None: onnxruntime for an ONNX export folder, native otherwise."""
    from edgegen.diffusion.onnx_components import is_onnx_diffusion_folder
    onnx_folder = is_onnx_diffusion_folder(path)
    if backend is None:
        backend = "onnxruntime" if onnx_folder else "native"
    elif onnx_folder and backend != "onnxruntime":
        raise UsageError(f"--backend {backend}: {path} is an ONNX export, which only the onnxruntime backend runs; "
                         "pass --backend onnxruntime (or the diffusers folder it was exported from)")
    if backend not in LOADERS:
        raise UsageError(f"--backend: expected one of {', '.join(LOADERS)}, found {backend!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"--threads: expected a positive integer, found {threads!r}")
    folder = read_folder(path)
    module, loader = LOADERS[backend]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise UsageError(f"--backend {backend}: {module} is not part of this edgegen build; "
                         f"use one of {', '.join(b for b in LOADERS if b != backend)}") from None
    components = getattr(mod, loader)(folder.path, threads)
    # edgegen's fused guidance + scheduler kernel where the latents are NumPy arrays anyway (the
    # torch reference keeps the schedulers' own float64 step, as a reference should)
    fused = Ops("cpp", threads or os.cpu_count() or 1).guided_update if backend != "torch" else None
    return ImagePipeline(components, folder.tokenizer, folder.scheduler_config, scaling_factor=folder.scaling_factor,
                         class_names=folder.class_names, null_class=folder.null_class,
                         latent_multiple=2 ** (folder.unet_levels - 1), model=folder.path.name, backend=backend,
                         fused=fused)
