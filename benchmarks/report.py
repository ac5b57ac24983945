"""What a benchmark run found, as llama-bench shows it: markdown tables and a JSON record.

A ``Case`` holds one engine's repetitions on one (model, quant, threads); the tables turn
each into mean ± sd of tokens/s, the edgegen/llama.cpp ratio, achieved GB/s and its share
of the bandwidth this machine measured at that thread count.
"""
from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass, field

from edgegen.bench import sysinfo

GB = 1e9
MB = 1e6
MIB = 1024 * 1024
PEER = "llama.cpp"        # engines.LLAMA_CPP (report.py stays importable without the engines)
OURS = "edgegen"          # engines.EDGEGEN
PACKAGES = ("llama_cpp_python", "numpy", "numba", "gguf")


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


NOTES = ("pp: the whole prompt in one call; tg: single-token calls, each including the Python call into the "
         "engine and np.argmax over the logits (greedy, no sampler). Excluded: building/converting the model, "
         "loading, KV-cache allocation, one warm-up run per engine. Repetitions alternate between the engines. "
         "GB/s = bytes read per decoded token (weights + KV cache at the mean decode position, below) x tg t/s; "
         "% of BW: of the read bandwidth measured at that thread count.")


def traffic_table(cases: list[Case]) -> str:
    """Bytes one decode step reads, per file and engine (edgegen's KV cache is float32, llama.cpp's F16)."""
    lines = ["| model | quant | engine | weights MB/token | KV cache MB/token |", "|---|---|---|---:|---:|"]
    seen = set()
    for c in cases:
        if (c.model, c.quant, c.engine) in seen:
            continue
        seen.add((c.model, c.quant, c.engine))
        lines.append(f"| {c.model} | {c.quant} | {c.engine} | {(c.bytes_per_token - c.kv_bytes_per_token) / MB:.1f} "
                     f"| {c.kv_bytes_per_token / MB:.2f} |")
    return "\n".join(lines)


def overhead_table(cases: list[Case]) -> str:
    """Each engine's wall time (through Python) against its own timer: the Python-side cost per
    token (wall - engine), which for edgegen includes the generation loop's checks and allocation."""
    lines = ["| model | quant | threads | engine | pp wall ms | pp engine ms | tg wall ms/token | tg engine ms/token "
             "| Python ms/token |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        if not c.engine_pp_s:
            continue
        wall_tg = 1e3 * statistics.fmean(c.wall_tg_s) / c.n_decode
        engine_tg = 1e3 * statistics.fmean(c.engine_tg_s) / c.n_decode
        lines.append(f"| {c.model} | {c.quant} | {c.threads} | {c.engine} | {1e3 * statistics.fmean(c.wall_pp_s):.1f} "
                     f"| {1e3 * statistics.fmean(c.engine_pp_s):.1f} | {wall_tg:.3f} | {engine_tg:.3f} "
                     f"| {wall_tg - engine_tg:.3f} |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = sysinfo.versions(PACKAGES)
    found["edgegen"] += f" ({sysinfo.source_commit()})"
    return found


def machine(bandwidth: dict[int, float]) -> dict:
    return {"cpu": sysinfo.cpu_model(), "cores": sysinfo.cores(), "cpu_flags": sysinfo.cpu_flags(), "python": platform.python_version(),
            "bandwidth_gbps": {str(t): round(b, 2) for t, b in bandwidth.items()}, "versions": versions()}


def machine_text(m: dict) -> str:
    bw = ", ".join(f"{t} thread(s) {b:.1f} GB/s" for t, b in m["bandwidth_gbps"].items())
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"CPU: {m['cpu']}, {m['cores']} cores ({' '.join(m['cpu_flags'])}); measured read bandwidth: {bw}\nPython {m['python']}; {vers}"


@dataclass(frozen=True)
class Agreement:
    """edgegen against llama.cpp on the same prompt: do they pick the same greedy tokens?"""
    model: str
    quant: str
    threads: int
    prefill_argmax: tuple[int, int]       # (edgegen, llama.cpp) argmax of the last prompt token's logits
    logits_rel_diff: float                # max |edgegen - llama.cpp| / max |llama.cpp| on those logits
    decode_match: int                     # leading greedy tokens that are equal
    n_decode: int
    worst_rank: int                       # edgegen's tokens ranked by llama.cpp's logits on the same path
    worst_gap: float                      # and how far below llama.cpp's best, relative (engines.TokenCheck)
    repeatable: dict[str, bool]           # each engine gave the same tokens in every repetition


def agreement_table(rows: list[Agreement]) -> str:
    lines = ["| model | quant | threads | prefill argmax (edgegen / llama.cpp) | rel. max logit diff "
             "| greedy tokens equal | worst rank / gap of edgegen's tokens | repeatable |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for a in rows:
        mark = "same" if a.prefill_argmax[0] == a.prefill_argmax[1] else "DIFFERENT"
        rep = ", ".join(f"{e} {'yes' if ok else 'NO'}" for e, ok in a.repeatable.items())
        argmax = f"{a.prefill_argmax[0]} / {a.prefill_argmax[1]} ({mark})"
        lines.append(f"| {a.model} | {a.quant} | {a.threads} | {argmax} | {a.logits_rel_diff:.2e} "
                     f"| {a.decode_match}/{a.n_decode} | {a.worst_rank} / {a.worst_gap:.2e} | {rep} |")
    return "\n".join(lines)


@dataclass
class Startup:
    model: str
    quant: str
    engine: str
    threads: int
    first_token_s: float     # process start to the first token (imports, load, 8-token prefill)
    peak_rss: int            # bytes
    file_bytes: int
    kv_bytes: float          # the KV cache the engine allocates for the context


def startup_table(rows: list[Startup]) -> str:
    """Cold start and peak memory; 'other' = peak RSS - file - KV cache (interpreter, libraries,
    tokenizer, scratch)."""
    lines = ["| model | quant | engine | threads | first token s | peak RSS MiB | file MiB | KV MiB | other MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        other = r.peak_rss - r.file_bytes - r.kv_bytes
        lines.append(f"| {r.model} | {r.quant} | {r.engine} | {r.threads} | {r.first_token_s:.2f} | {r.peak_rss / MIB:.0f} "
                     f"| {r.file_bytes / MIB:.0f} | {r.kv_bytes / MIB:.1f} | {other / MIB:.0f} |")
    return "\n".join(lines)
