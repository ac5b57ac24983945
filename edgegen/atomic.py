"""Files that appear complete or not at all: written under a temporary name beside the target
(same folder, so the rename is atomic), then renamed over it. Used by every writer of a single
output file (GGUF conversions, PNGs, plots, caches)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def default_mode() -> int:
    """The permissions a plain open() would give a new file under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomically(path: str | os.PathLike, write: Callable[[Path], T], mode: int | None = None) -> T:
    """Call ``write(tmp)`` on an empty temporary file beside ``path``, then move it to ``path`` and
    return what ``write`` returned. On any error (KeyboardInterrupt included) the temporary file is
    removed and ``path`` is left as it was. ``mode``: the file's permissions (default
    ``default_mode()``; mkstemp's own 0600 would surprise)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, default_mode() if mode is None else mode)
        result = write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result
