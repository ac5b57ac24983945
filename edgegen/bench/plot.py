"""``--plot out.png``: the sweep as lines, one per backend and test (matplotlib, optional).

x is the thread count, or the depth when the run has several depths; y is tokens/s (images:
steps per second). Written atomically: a temporary file beside ``out``, then renamed.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from edgegen.atomic import write_atomically
from edgegen.errors import MissingDependencyError

INSTALL = "pip install 'edgegen[bench]'"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(f"--plot needs matplotlib: {INSTALL}") from None
    matplotlib.use("Agg")                       # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def series(rows: list[dict]) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """(x label, {line label: [(x, y), ...]}) for ``rows`` (enriched records)."""
    text = bool(rows) and "avg_ts" in rows[0]
    by_depth = text and len({r["n_depth"] for r in rows}) > 1
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if text:
            test = r["test"].split(" @ ")[0] if by_depth else r["test"]
            label = f"{r['backends']} {test}" + (f" t{r['n_threads']}" if by_depth else "")
            x, y = (r["n_depth"] if by_depth else r["n_threads"]), r["avg_ts"]
        else:
            label, x, y = f"{r['backends']} {r['test']}", r["n_threads"], 1.0 / r["avg_step_s"]
        lines[f"{r['model_filename']}: {label}" if len({q['model_filename'] for q in rows}) > 1 else label].append((x, y))
    return ("depth (tokens in the KV cache)" if by_depth else "threads"), {k: sorted(v) for k, v in lines.items()}


def plot(rows: list[dict], out: str | os.PathLike, title: str = "edgegen bench") -> Path:
    plt = _pyplot()
    xlabel, lines = series(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, points in lines.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tokens/s" if rows and "avg_ts" in rows[0] else "steps/s")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if lines:
        ax.legend(fontsize="small")
    out = Path(out)
    try:
        write_atomically(out, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return out
