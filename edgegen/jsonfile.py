"""Reading a JSON object from a model or config file, with errors that name the file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgegen.errors import EdgegenError


def read_json_object(path: Path, error: type[EdgegenError], hint: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` (naming the file; ``hint`` says why it should exist)
    when it is missing, not JSON, or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: file not found" + (f" ({hint})" if hint else "")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
