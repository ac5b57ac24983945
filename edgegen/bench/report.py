"""One bench run end to end: bandwidth (cached), the children, the records, the output, the plot."""
from __future__ import annotations

import sys
from typing import TextIO

from edgegen.bench import bandwidth as bw
from edgegen.bench import output, spawn, sysinfo
from edgegen.errors import EdgegenError

TEXT_NOTES = ("pp: the prompt in one call; tg: single-token calls; pp+tg: both in one run, one rate over all tokens; "
              "@ dN: N tokens already in the KV cache. Mean ± sd over the repetitions; ratio: speed / the first "
              "backend's on the same test. GB/s (tg only) = bytes one decode step reads (weights + KV cache at the "
              "mean position) x t/s; % of BW: of the read bandwidth measured at that thread count. Each backend runs "
              "in a fresh process (peak RSS is its own); llama.cpp through llama-cpp-python directly.")
IMAGE_NOTES = ("s/step: mean ± sd over every step of every timed image (UNet on a batch of two with guidance, and "
               "the scheduler update); s/image: text encoding + steps + VAE decode; ratio: speed / the first "
               "backend's. Each backend runs in a fresh process (peak RSS is its own).")


def measured_bandwidth(threads: list[int], log) -> dict[int, float]:
    """GB/s per thread count from the per-machine cache (measured on first use); empty where it cannot run."""
    found = {}
    for t in threads:
        try:
            found[t] = bw.cached_bandwidth(t)
        except EdgegenError as e:
            log(f"edgegen bench: bandwidth probe skipped at {t} threads: {e}")
    return found


def _notes(mode: str) -> str:
    from edgegen.bench.image import EXCLUDED as IMAGE_EXCLUDED
    from edgegen.bench.text import EXCLUDED as TEXT_EXCLUDED
    return (TEXT_NOTES, TEXT_EXCLUDED) if mode == "text" else (IMAGE_NOTES, IMAGE_EXCLUDED)


def run_and_print(jobs: list[dict], total: int, mode: str, backends: list[str], threads: list[int], a,
                  out: TextIO = sys.stdout, run=None) -> None:
    """Measure, print in ``a.output``'s format, draw ``a.plot``; on Ctrl-C print what was measured and
    re-raise KeyboardInterrupt (the CLI exits 130)."""
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    needs_bw = mode == "text" and not a.no_bandwidth and any(n and not p for p, n, _ in jobs[0]["tests"])
    bandwidth = measured_bandwidth(threads, log) if needs_bw else {}
    collected = spawn.collect(jobs, run=run or spawn.run_child, total=total, log=log)
    notes, excluded = _notes(mode)
    machine = sysinfo.describe()
    rows = output.enrich(collected.results, backends, machine, bandwidth, excluded)
    text = output.render(a.output, rows, machine, bandwidth, f"{notes} {excluded[0].upper()}{excluded[1:]}.")
    if collected.interrupted:
        log(f"edgegen bench: interrupted; {len(rows)} result(s) measured so far:")
    out.write(text)
    out.flush()
    if collected.interrupted:
        raise KeyboardInterrupt
    if not rows:
        reasons = "; ".join(f"{b}: {why}" for b, why in collected.failures)
        raise EdgegenError(f"no backend could run: {reasons}")
    if a.plot:
        from edgegen.bench.plot import plot
        log(f"edgegen bench: plot written to {plot(rows, a.plot)}")
