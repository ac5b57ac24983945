"""What a benchmark run found, as llama-bench shows it: markdown tables and a JSON record.

A ``Case`` holds one engine's repetitions on one (model, quant, threads); the tables turn
each into mean ± sd of tokens/s, the edgegen/llama.cpp ratio, achieved GB/s and its share
of the bandwidth this machine measured at that thread count.
"""
from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from importlib import metadata

GB = 1e9
MIB = 1024 * 1024
PEER = "llama.cpp"
OURS = "edgegen"
PACKAGES = ("edgegen", "llama_cpp_python", "numpy", "numba", "gguf")


@dataclass
class Case:
    model: str
    quant: str
    file_mib: float
    threads: int
    engine: str
    n_prompt: int
    n_decode: int
    bytes_per_token: float                            # decode: weights + KV cache at the mean position
    kv_bytes_per_token: float
    bandwidth_gbps: float                             # measured at ``threads``
    pp_tps: list[float] = field(default_factory=list)
    tg_tps: list[float] = field(default_factory=list)
    engine_pp_s: list[float] = field(default_factory=list)   # the engine's own timers (llama.cpp)
    engine_tg_s: list[float] = field(default_factory=list)
    wall_pp_s: list[float] = field(default_factory=list)
    wall_tg_s: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.model, self.quant, self.threads)

    def tg_gbps(self) -> float:
        return self.bytes_per_token * statistics.fmean(self.tg_tps) / GB


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def _ratio(case: Case, peers: dict, attr: str) -> str:
    peer = peers.get(case.key)
    if case.engine != OURS or peer is None:
        return ""
    return f"{statistics.fmean(getattr(case, attr)) / statistics.fmean(getattr(peer, attr)):.3f}"


def speed_table(cases: list[Case]) -> str:
    peers = {c.key: c for c in cases if c.engine == PEER}
    n_pp, n_tg = cases[0].n_prompt, cases[0].n_decode
    lines = [f"| model | quant | MiB | threads | engine | pp{n_pp} t/s | tg{n_tg} t/s | pp ratio | tg ratio "
             "| tg GB/s | % of BW |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        gbps = c.tg_gbps()
        lines.append(f"| {c.model} | {c.quant} | {c.file_mib:.1f} | {c.threads} | {c.engine} | {mean_sd(c.pp_tps)} "
                     f"| {mean_sd(c.tg_tps)} | {_ratio(c, peers, 'pp_tps')} | {_ratio(c, peers, 'tg_tps')} "
                     f"| {gbps:.2f} | {100 * gbps / c.bandwidth_gbps:.0f} |")
    return "\n".join(lines)


def overhead_table(cases: list[Case]) -> str:
    """llama.cpp's wall time (through Python) against its own counters: the Python-side cost."""
    lines = ["| model | quant | threads | pp wall ms | pp llama.cpp ms | tg wall ms/token | tg llama.cpp ms/token |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        if not c.engine_pp_s:
            continue
        lines.append(f"| {c.model} | {c.quant} | {c.threads} | {1e3 * statistics.fmean(c.wall_pp_s):.1f} "
                     f"| {1e3 * statistics.fmean(c.engine_pp_s):.1f} "
                     f"| {1e3 * statistics.fmean(c.wall_tg_s) / c.n_decode:.3f} "
                     f"| {1e3 * statistics.fmean(c.engine_tg_s) / c.n_decode:.3f} |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass                      # not Linux: fall back to what platform knows
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine(bandwidth: dict[int, float]) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "python": platform.python_version(),
            "bandwidth_gbps": {str(t): round(b, 2) for t, b in bandwidth.items()}, "versions": versions()}


def machine_text(m: dict) -> str:
    bw = ", ".join(f"{t} thread(s) {b:.1f} GB/s" for t, b in m["bandwidth_gbps"].items())
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"CPU: {m['cpu']}, {m['cores']} cores; measured read bandwidth: {bw}\nPython {m['python']}; {vers}"
