"""Bytes a decode step reads: edgegen.bench.traffic, with the benchmark scripts' engine names.

The scripts call the engines "edgegen" and "llama.cpp"; edgegen's backend for the former is "native".
"""
from __future__ import annotations

from pathlib import Path

from edgegen.bench.traffic import DecodeTraffic, mean_past
from edgegen.bench.traffic import decode_traffic as _decode_traffic

ENGINE_BACKEND = {"edgegen": "native", "llama.cpp": "llama.cpp"}

__all__ = ["DecodeTraffic", "decode_traffic", "mean_past", "ENGINE_BACKEND"]


def decode_traffic(path: Path, engine: str) -> DecodeTraffic:
    """Per-token bytes of the GGUF model at ``path`` for ``engine`` ("edgegen" or "llama.cpp")."""
    return _decode_traffic(path, ENGINE_BACKEND[engine])
