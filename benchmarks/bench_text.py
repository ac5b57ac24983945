"""Text-generation speed of edgegen against llama.cpp, in the same run, on random-weight models
with the shapes of SmolLM-135M and TinyLlama-1.1B.

    python benchmarks/bench_text.py [--models smollm,tinyllama] [--quants f16,q8_0,q4_0,q4_k_m]
        [--threads 1,2] [--prompt 128] [--decode 64] [--reps 3] [--engines edgegen,llamacpp] [--json out.json]

For each model, quant and thread count, both engines load the same GGUF file (built and cached
by models.py) and run, repetition by repetition in turn (edgegen, llama.cpp, edgegen, ...):
one warm-up (not reported), then ``--reps`` timed runs of prefill (the whole prompt in one call:
pp) and greedy decode (``--decode`` single-token calls: tg). Reported as mean ± sd of tokens/s.

Excluded from the timings: model building/conversion, loading, KV-cache allocation, the warm-up.
Included: the Python call into each engine and ``np.argmax`` over the logits per decoded token.
GB/s = bytes one decode step reads (traffic.py: weights + KV cache at the mean position) x tg t/s;
% of BW compares it with this machine's read bandwidth measured (bandwidth.py) at that thread count.
The runners, the greedy loop, the traffic count and the bandwidth probe are edgegen.bench's (the
``edgegen bench`` command); this script adds the agreement check and the cold-start table.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bandwidth                                     # noqa: E402  (needs the path above when run as a script)
import engines                                       # noqa: E402
import models                                        # noqa: E402
import report                                        # noqa: E402
import startup                                       # noqa: E402
import traffic                                       # noqa: E402

ENGINES = {"edgegen": engines.EDGEGEN, "llamacpp": engines.LLAMA_CPP}


def _list(text: str, allowed, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what}: expected a comma-separated subset of {', '.join(allowed)}, found {text!r}")
    return items


def _positive_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"--{what}: expected comma-separated positive integers, found {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"--{what}: expected positive integers, found {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(models.SHAPES))
    p.add_argument("--quants", default=",".join(models.QUANTS))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--prompt", type=int, default=engines.DEFAULT_PROMPT, help="prompt tokens (random ids, fixed seed)")
    p.add_argument("--decode", type=int, default=engines.DEFAULT_DECODE, help="greedy tokens decoded")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--json", type=Path, help="also write everything measured to this file")
    p.add_argument("--cache-dir", type=Path, default=models.DEFAULT_CACHE_DIR, help="built checkpoints and GGUF files")
    p.add_argument("--rebuild", action="store_true", help="convert the GGUF files again (after a converter change)")
    args = p.parse_args(argv)
    args.models = _list(args.models, models.SHAPES, "models")
    args.quants = _list(args.quants, models.QUANTS, "quants")
    args.engines = [ENGINES[e] for e in _list(args.engines, ENGINES, "engines")]
    args.threads = _positive_ints(args.threads, "threads")
    for name in ("prompt", "decode", "reps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name}: expected a positive integer, found {getattr(args, name)}")
    return args


def available_engines(wanted: list[str]) -> list[str]:
    if report.PEER in wanted and importlib.util.find_spec("llama_cpp") is None:
        print("llama_cpp is NOT installed (pip install 'edgegen[llamacpp]'): running edgegen alone, "
              "so there are no ratios and no agreement check", file=sys.stderr)
        return [e for e in wanted if e != report.PEER]
    return wanted


def run_interleaved(runners: list, prompt: list[int], n_decode: int, reps: int) -> dict[str, list]:
    """One warm-up each, then ``reps`` rounds of every engine in turn; the warm-up is dropped."""
    results: dict[str, list] = {r.name: [] for r in runners}
    for rep in range(reps + 1):
        for r in runners:
            result = engines.run_once(r, prompt, n_decode)
            if rep > 0:
                results[r.name].append(result)
    return results


def new_case(shape, quant: str, path: Path, threads: int, engine: str, args, bw: float, tr) -> report.Case:
    past = traffic.mean_past(args.prompt, args.decode)
    return report.Case(model=shape.name, quant=quant, file_mib=tr.file_bytes / report.MIB, threads=threads,
                       engine=engine, n_prompt=args.prompt, n_decode=args.decode,
                       bytes_per_token=tr.bytes_per_token(past), kv_bytes_per_token=tr.kv_bytes(past),
                       bandwidth_gbps=bw)


def fill_case(case: report.Case, results: list) -> report.Case:
    for r in results:
        case.pp_tps.append(case.n_prompt / r.prefill_s)
        case.tg_tps.append(case.n_decode / r.decode_s)
        case.wall_pp_s.append(r.prefill_s)
        case.wall_tg_s.append(r.decode_s)
        if r.engine_prefill_s is not None:
            case.engine_pp_s.append(r.engine_prefill_s)
            case.engine_tg_s.append(r.engine_decode_s)
    return case


def agreement(shape, quant: str, threads: int, path: Path, prompt: list[int],
              results: dict[str, list]) -> report.Agreement:
    ours, peer = results[report.OURS][0], results[report.PEER][0]
    check = engines.check_tokens(path, prompt, ours.tokens, threads)
    diff = np.abs(ours.prefill_logits - peer.prefill_logits).max() / np.abs(peer.prefill_logits).max()
    match = next((i for i, (a, b) in enumerate(zip(ours.tokens, peer.tokens)) if a != b), len(ours.tokens))
    repeatable = {name: all(r.tokens == rs[0].tokens for r in rs) for name, rs in results.items()}
    return report.Agreement(shape.name, quant, threads,
                            (int(ours.prefill_logits.argmax()), int(peer.prefill_logits.argmax())),
                            float(diff), match, len(ours.tokens), check.worst_rank, check.worst_gap, repeatable)


def startups(shape, quant: str, path: Path, args, tr) -> list[report.Startup]:
    """Cold start and peak RSS of each engine at the largest thread count, in fresh processes."""
    threads = max(args.threads)
    n_ctx = max(args.prompt + args.decode, len(startup.PROMPT) + startup.N_DECODE)   # the start-up run's own tokens
    rows = []
    for engine in args.engines:
        first, rss = startup.measure(engine, path, threads, n_ctx)
        rows.append(report.Startup(shape.name, quant, engine, threads, first, rss, tr[engine].file_bytes,
                                   tr[engine].kv_bytes(n_ctx)))
        _log(f"{shape.name} {quant} {engine}: first token after {first:.2f} s, peak RSS {rss / report.MIB:.0f} MiB")
    return rows


def bench_file(shape, quant: str, args, bw: dict[int, float]) -> tuple[list, list, list]:
    path = models.build_gguf(shape, quant, args.cache_dir, rebuild=args.rebuild, log=_log)
    tr = {engine: traffic.decode_traffic(path, engine) for engine in args.engines}
    prompt = engines.random_prompt(shape.vocab, args.prompt, engines.PROMPT_SEED)
    cases, agreements = [], []
    for threads in args.threads:
        runners = [engines.open_runner(e, path, threads, args.prompt + args.decode) for e in args.engines]
        try:
            results = run_interleaved(runners, prompt, args.decode, args.reps)
        finally:
            for r in runners:
                r.close()
        for engine in args.engines:
            case = fill_case(new_case(shape, quant, path, threads, engine, args, bw[threads], tr[engine]),
                             results[engine])
            _log(f"{shape.name} {quant} {threads}t {engine}: pp {report.mean_sd(case.pp_tps)} t/s, "
                 f"tg {report.mean_sd(case.tg_tps)} t/s")
            cases.append(case)
        if len(results) == len(ENGINES):
            agreements.append(agreement(shape, quant, threads, path, prompt, results))
    return cases, agreements, startups(shape, quant, path, args, tr)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.engines = available_engines(args.engines)
    bw = {t: bandwidth.read_bandwidth(t) for t in args.threads}
    machine = report.machine(bw)
    cases, agreements, starts = [], [], []
    for name in args.models:
        for quant in args.quants:
            c, a, s = bench_file(models.shape_for(name), quant, args, bw)
            cases += c
            agreements += a
            starts += s
    command = "python benchmarks/bench_text.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\n\n{report.machine_text(machine)}\n\n{report.speed_table(cases)}\n\n{report.NOTES}\n\n"
          f"{report.traffic_table(cases)}")
    if agreements:
        print(f"\nAgreement (first timed repetition; rank / gap: edgegen's greedy tokens scored by llama.cpp's "
              f"logits along the same tokens, 0 / 0 = always llama.cpp's argmax):\n\n"
              f"{report.agreement_table(agreements)}")
    if any(c.engine_pp_s for c in cases):
        print(f"\nWall time against each engine's own timer (llama.cpp: llama_perf_context; edgegen: its C++ "
              f"forward call):\n\n{report.overhead_table(cases)}")
    print(f"\nCold start (process start to first token, file in the page cache) and peak RSS, fresh processes:\n\n"
          f"{report.startup_table(starts)}")
    if args.json:
        record = {"command": command, "machine": machine, "cases": [asdict(c) for c in cases],
                  "agreement": [asdict(a) for a in agreements], "startup": [asdict(r) for r in starts]}
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
