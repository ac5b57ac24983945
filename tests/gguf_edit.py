"""Rewrite a GGUF file with edits, to make the malformed files the error tests need."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.constants import GGMLQuantizationType

SKIP_KEYS = ("GGUF.", "general.architecture")


def rewrite_gguf(src: Path, dst: Path, *, arch: str | None = None, set_meta: dict[str, Any] | None = None,
                 drop_meta: tuple[str, ...] = (), drop_tensors: tuple[str, ...] = (),
                 edit_tensor: Callable[[str, np.ndarray, GGMLQuantizationType], tuple[np.ndarray, GGMLQuantizationType]] | None = None) -> Path:
    r = GGUFReader(src)
    old_arch = r.fields["general.architecture"].contents()
    new_arch = arch or old_arch
    w = GGUFWriter(dst, new_arch)
    set_meta = dict(set_meta or {})
    for name, field in r.fields.items():
        if name.startswith(SKIP_KEYS) or name in drop_meta:
            continue
        new_name = name.replace(f"{old_arch}.", f"{new_arch}.", 1) if name.startswith(old_arch + ".") else name
        if new_name in set_meta:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(new_name, field.contents(), vtype, sub_type=sub)
    for key, value in set_meta.items():
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_float32(key, float(value))
    for t in r.tensors:
        if t.name in drop_tensors:
            continue
        data, qtype = np.asarray(t.data), t.tensor_type
        if edit_tensor is not None:
            data, qtype = edit_tensor(t.name, data, qtype)
        w.add_tensor(t.name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst
