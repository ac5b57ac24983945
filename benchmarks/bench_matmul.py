"""Kernel-level profile of edgegen's C++ matmul: where a decode or prefill step's time goes.

    python benchmarks/bench_matmul.py [--threads 1,2] [--isa auto]

Decode shapes (one activation row): ns per 32 weights and GB/s of weights read, for a matrix
that stays in the last-level cache (the kernel's instruction cost) and one 4 to 8x larger than
it (streamed from memory). Prefill (128 activation rows): GFLOP/s. Best of several runs; the
weights are random blocks of the given type (speed does not depend on the values).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kernel_data import make_weights  # noqa: E402  (the tests' random valid blocks)

from edgegen.constants import GGMLType  # noqa: E402
from edgegen.kernels import _cpp  # noqa: E402

TYPES = "F16,Q8_0,Q4_0,Q4_K,Q6_K"
K = 2048
CACHED_ROWS = 4096          # 4096 x 2048: 2.4 to 17 MB, inside the 32 MB L3
STREAMED_ROWS = 32768       # 8x that: read from memory on every call
PREFILL_ROWS, PREFILL_T = 2048, 128
REPEAT_BYTES = 3e8          # time at least this many bytes per case


def best_seconds(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def weights(qtype: GGMLType, rows: int, rng) -> np.ndarray:
    base = make_weights(qtype, 1024, K, rng)
    return np.ascontiguousarray(np.tile(base, (rows // 1024, 1)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--isa", default="auto", help=f"dot table: auto or one of {_cpp.isa_names()}")
    p.add_argument("--types", default=TYPES, help="GGML types, comma-separated")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    print(f"isa {args.isa} (best here: {_cpp.best_isa()}); K = {K}\n")
    print("| type | threads | cached ns/32 values | cached GB/s | streamed ns/32 values | streamed GB/s | prefill GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for qtype in [GGMLType[t] for t in args.types.split(",")]:
        mats = {rows: weights(qtype, rows, rng) for rows in (CACHED_ROWS, STREAMED_ROWS)}
        x1 = rng.standard_normal((1, K)).astype(np.float32)
        xp = rng.standard_normal((PREFILL_T, K)).astype(np.float32)
        for th in threads:
            cells = []
            for rows, w in mats.items():
                out = np.empty((1, rows), np.float32)
                s = best_seconds(lambda: _cpp.matmul(w, int(qtype), K, x1, out, th, isa=args.isa),
                                 max(5, int(REPEAT_BYTES / w.nbytes)))
                cells += [f"{s * 1e9 / (rows * K / 32):.2f}", f"{w.nbytes / s / 1e9:.1f}"]
            wp = mats[CACHED_ROWS][:PREFILL_ROWS]
            outp = np.empty((PREFILL_T, PREFILL_ROWS), np.float32)
            s = best_seconds(lambda: _cpp.matmul(wp, int(qtype), K, xp, outp, th, isa=args.isa), 5)
            cells.append(f"{2 * PREFILL_ROWS * K * PREFILL_T / s / 1e9:.0f}")
            print(f"| {qtype.name} | {th} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
