"""Reading a diffusers pipeline folder: model_index.json, each component's config, the scheduler,
the CLIP tokenizer and class names. No model weights are read here (the backends load those).

    model_index.json                 {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], ...}
    unet/config.json                 UNet2DConditionModel or UNet2DModel
    vae/config.json                  AutoencoderKL (latent models only)
    text_encoder/config.json         CLIPTextModel (text-to-image only)
    tokenizer/vocab.json, merges.txt CLIP's BPE (+ tokenizer_config.json, special_tokens_map.json)
    scheduler/scheduler_config.json  -> edgegen.schedulers.scheduler_for_config
    class_labels.json                optional, class-conditional pixel models: ["cat", "dog", ...]
                                     or {"labels": [...], "null_class": k} for a model trained with a
                                     null class k (then classifier-free guidance uses it)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.errors import MissingDependencyError, ModelFileError, TokenizerError, UnsupportedModelError

# component -> the diffusers/transformers classes edgegen runs (one explicit table)
SUPPORTED_CLASSES: dict[str, tuple[str, ...]] = {
    "unet": ("UNet2DConditionModel", "UNet2DModel"),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
}
# diffusers' AutoencoderKL default (SD 1.x); SD 2 and SDXL folders state their own in vae/config.json
DEFAULT_SCALING_FACTOR = 0.18215
COMPONENT_DIRS: dict[str, tuple[str, ...]] = {"vae": ("vae", "vae_decoder", "vae_encoder")}
CLIP_PRETOKENIZE = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""   # CLIP's word split


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ModelFileError(f"{path}: {what} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: expected JSON ({what}), found a malformed file: {e}") from None


def component_class(folder: Path, index: dict, name: str) -> str | None:
    """The class model_index.json names for component ``name`` (None where absent or null)."""
    entry = index.get(name)
    if entry is None or not isinstance(entry, (list, tuple)) or len(entry) != 2 or entry[1] is None:
        return None
    cls = entry[1]
    if name in SUPPORTED_CLASSES and cls not in SUPPORTED_CLASSES[name]:
        raise UnsupportedModelError(f"{folder / 'model_index.json'}: {name} is a {cls}; edgegen runs "
                                    f"{' or '.join(SUPPORTED_CLASSES[name])}")
    if component_dir(folder, name) is None:
        raise ModelFileError(f"{folder / name}: model_index.json lists component {name!r} ({cls}) but the folder is missing")
    return cls


def component_dir(folder: Path, name: str) -> Path | None:
    """Where component ``name`` lives: its own folder, or for the VAE an ONNX export's vae_decoder/
    (onnx_components.py: each part keeps the source component's config.json)."""
    for d in COMPONENT_DIRS.get(name, (name,)):
        if (folder / d).is_dir():
            return folder / d
    return None


@dataclass(frozen=True)
class PipelineFolder:
    """What a diffusers pipeline folder says, checked."""
    path: Path
    classes: dict[str, str]                 # component -> class name (present components only)
    configs: dict[str, dict]                # unet / vae / text_encoder -> its config.json
    scheduler_config: dict
    scaling_factor: float
    class_names: tuple[str, ...] = ()
    null_class: int | None = None
    tokenizer: "ClipTokenizer | None" = field(default=None, repr=False)

    @property
    def unet_levels(self) -> int:
        return len(self.configs["unet"].get("block_out_channels", (0,)))

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.configs["vae"].get("block_out_channels", (0,))) - 1) if "vae" in self.configs else 1


def read_folder(path) -> PipelineFolder:
    """Read and check a diffusers pipeline folder (see the module docstring)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: expected a diffusers pipeline folder (with model_index.json), found "
                             f"{'a file' if folder.exists() else 'nothing'}")
    index = read_json(folder / "model_index.json", "the pipeline index")
    classes = {n: c for n in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
               if (c := component_class(folder, index, n)) is not None}
    if "unet" not in classes:
        raise ModelFileError(f"{folder / 'model_index.json'}: no unet component; edgegen needs one")
    if "scheduler" not in classes:
        raise ModelFileError(f"{folder / 'model_index.json'}: no scheduler component; edgegen needs one")
    configs = {n: read_json(component_dir(folder, n) / "config.json", f"the {n} config")
               for n in ("unet", "vae", "text_encoder") if n in classes}
    if classes["unet"] == "UNet2DConditionModel":
        for need in ("vae", "text_encoder", "tokenizer"):
            if need not in classes:
                raise ModelFileError(f"{folder / 'model_index.json'}: a text-to-image UNet needs a {need} component; none is listed")
    sched = read_json(folder / "scheduler" / "scheduler_config.json", "the scheduler config")
    names, null = read_class_names(folder, configs["unet"])
    tok = read_clip_tokenizer(folder / "tokenizer", configs.get("text_encoder")) if "tokenizer" in classes else None
    scaling = float(configs.get("vae", {}).get("scaling_factor", DEFAULT_SCALING_FACTOR))
    return PipelineFolder(folder, classes, configs, sched, scaling, names, null, tok)


def read_class_names(folder: Path, unet_config: dict) -> tuple[tuple[str, ...], int | None]:
    """Class names of a class-conditional UNet2DModel (class_labels.json, else "0".."n-1"), and its null class."""
    n = unet_config.get("num_class_embeds")
    if not n:
        return (), None
    path = folder / "class_labels.json"
    if not path.is_file():
        return tuple(str(i) for i in range(n)), None
    data = read_json(path, "the class names")
    labels, null = (data.get("labels"), data.get("null_class")) if isinstance(data, dict) else (data, None)
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) > n:
        raise ModelFileError(f"{path}: expected a list of at most {n} class names (num_class_embeds), found {labels!r}")
    if null is not None and (not isinstance(null, int) or not 0 <= null < n):
        raise ModelFileError(f"{path}: null_class must be a class index in [0, {n}), found {null!r}")
    return tuple(labels), null


class ClipTokenizer:
    """CLIP's BPE as diffusers calls it: ``tokenizer(texts, padding="max_length", truncation=True)``.

    Built with the ``tokenizers`` library as transformers' CLIPTokenizerFast builds it: NFC, runs
    of whitespace to one space, lowercase; CLIP's word split then byte-level; BPE with a ``</w>``
    end-of-word suffix; ``<|startoftext|>`` ids ``<|endoftext|>``, padded to ``max_length``.
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *, bos: str, eos: str, pad: str,
                 unk: str, max_length: int, source: str = "tokenizer"):
        try:
            from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
        except ImportError:
            raise MissingDependencyError("the CLIP tokenizer needs tokenizers: pip install tokenizers") from None
        for name, tok in (("bos", bos), ("eos", eos), ("pad", pad)):
            if tok not in vocab:
                raise TokenizerError(f"{source}: the {name} token {tok!r} is not in vocab.json")
        bpe = models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                         fuse_unk=False, unk_token=unk if unk in vocab else None)
        t = Tokenizer(bpe)
        t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                             normalizers.Lowercase()])
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CLIP_PRETOKENIZE), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False)])
        self._tok = t
        self.bos_id, self.eos_id, self.pad_id = vocab[bos], vocab[eos], vocab[pad]
        self.max_length = max_length

    def tokens(self, text: str) -> list[int]:
        """The BPE ids of ``text`` without bos/eos, not truncated."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """int64 (B, max_length) ids, and the texts that were truncated (diffusers warns about them)."""
        keep = self.max_length - 2
        rows, cut = [], []
        for text in texts:
            ids = self.tokens(text)
            if len(ids) > keep:
                cut.append(text)
            row = [self.bos_id] + ids[:keep] + [self.eos_id]
            rows.append(row + [self.pad_id] * (self.max_length - len(row)))
        return np.array(rows, dtype=np.int64).reshape(len(texts), self.max_length), cut


def _token_name(v) -> str | None:
    return v.get("content") if isinstance(v, dict) else v


def read_clip_tokenizer(folder: Path, text_config: dict | None = None) -> ClipTokenizer:
    """tokenizer/vocab.json + merges.txt, special tokens from special_tokens_map.json / tokenizer_config.json."""
    vocab = read_json(folder / "vocab.json", "the CLIP vocabulary")
    merges_path = folder / "merges.txt"
    if not merges_path.is_file():
        raise ModelFileError(f"{merges_path}: the CLIP BPE merges are missing")
    lines = merges_path.read_text(encoding="utf-8").splitlines()
    merges = []
    for k, line in enumerate(lines):
        if (k == 0 and line.startswith("#version")) or not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ModelFileError(f"{merges_path}: line {k + 1}: expected two space-separated symbols, found {line!r}")
        merges.append((parts[0], parts[1]))
    special = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):   # the second wins, as in transformers
        if (folder / name).is_file():
            special.update({k: v for k, v in read_json(folder / name, "tokenizer settings").items() if v is not None})
    bos = _token_name(special.get("bos_token")) or "<|startoftext|>"
    eos = _token_name(special.get("eos_token")) or "<|endoftext|>"
    pad = _token_name(special.get("pad_token")) or eos
    unk = _token_name(special.get("unk_token")) or eos
    max_length = special.get("model_max_length")
    if not isinstance(max_length, int) or max_length > 10 ** 6:   # transformers writes 1e30 for "unset"
        max_length = (text_config or {}).get("max_position_embeddings", 77)
    return ClipTokenizer(vocab, merges, bos=bos, eos=eos, pad=pad, unk=unk, max_length=max_length, source=str(folder))
