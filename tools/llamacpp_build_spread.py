"""How far llama.cpp builds differ from each other on the real SmolLM2, beside edgegen.

    # once per llama-cpp-python build (put the build first on PYTHONPATH):
    PYTHONPATH=/path/to/avx2-build python tools/llamacpp_build_spread.py record avx2 out/
    python tools/llamacpp_build_spread.py record native out/
    python tools/llamacpp_build_spread.py compare out/

`record` saves the build's logits for the 256 teacher-forced positions of
tests/real_model/test_teacher_forced.py and its 64 greedy tokens for each golden case, with the
same settings as tests/real_model/reference.py, and how its logits over those positions in one
batch compare with the same positions fed one token per eval. `compare` prints, for every pair
of recorded builds and edgegen runs (default, ggml and ggml-avx512 kernels, batch and token by
token), the top-1 agreement over those positions and the first greedy token where they part.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CORPUS = ROOT / "tests" / "data" / "corpus.txt"
GOLDENS = ROOT / "tests" / "data" / "smollm2_goldens.json"
N_POSITIONS, N_TOKENS = 256, 64


def corpus_ids(model) -> list[int]:
    return model.tokenizer.encode(CORPUS.read_text(encoding="utf-8"))[:N_POSITIONS]


def record(tag: str, out: Path) -> None:
    import llama_cpp
    from real_model import reference

    import edgegen
    from edgegen.fetch import DEFAULT_CHAT_MODEL, fetch_model
    path = fetch_model(DEFAULT_CHAT_MODEL, progress=False)
    ids = corpus_ids(edgegen.load(path, threads=1, n_ctx=reference.N_CTX))
    llm = reference.open_llama(path, logits_all=True)
    cases = json.loads(GOLDENS.read_text(encoding="utf-8"))["cases"]
    out.mkdir(parents=True, exist_ok=True)
    batch = reference.all_logits(llm, ids)
    llm.reset()
    stepwise = []
    for i in ids:   # the same positions one token per eval
        llm.eval([i])
        stepwise.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))   # a copy, as all_logits
    invariance = {"top1": float((batch.argmax(1) == np.stack(stepwise).argmax(1)).mean()),
                  "max_abs_diff": float(np.abs(batch - np.stack(stepwise)).max())}
    np.save(out / f"{tag}.npy", batch)
    greedy = {c["name"]: reference.greedy(llm, c["prompt_ids"], N_TOKENS) for c in cases}
    record = {"llama_cpp": llama_cpp.__file__, "greedy": greedy, "batch_vs_stepwise": invariance}
    (out / f"{tag}.json").write_text(json.dumps(record), encoding="utf-8")
    print(f"{tag}: {llama_cpp.__file__}; batch vs token by token: {invariance}")


def edgegen_runs() -> dict[str, tuple[np.ndarray, dict[str, list[int]]]]:
    """edgegen's logits over the positions in one batch and token by token, and its greedy tokens,
    on the default kernels and on the ggml kernels (llama.cpp's AVX2 and AVX-512 arithmetic)."""
    import edgegen
    from edgegen.fetch import DEFAULT_CHAT_MODEL, fetch_model
    path = fetch_model(DEFAULT_CHAT_MODEL, progress=False)
    cases = json.loads(GOLDENS.read_text(encoding="utf-8"))["cases"]
    runs = {}
    for kernels in ("cpp", "ggml", "ggml-avx512"):
        model = edgegen.load(path, kernels=kernels, threads=1, n_ctx=512)
        ids = corpus_ids(model)
        session = model.new_session()
        stepwise = np.stack([np.asarray(session.eval([i])).reshape(-1, model.vocab_size)[-1] for i in ids])
        greedy = {c["name"]: [t.id for t in model.generate(c["prompt_ids"], max_tokens=N_TOKENS, ignore_eos=True,
                                                           temperature=0.0)] for c in cases}
        name = "edgegen" if kernels == "cpp" else f"edgegen-{kernels}"
        runs[f"{name}-batch"] = (model.logits(ids), greedy)
        runs[f"{name}-stepwise"] = (stepwise, greedy)
    return runs


def first_difference(a: list[int], b: list[int]) -> str:
    return next((str(i) for i, (x, y) in enumerate(zip(a, b)) if x != y), "none")


def compare(out: Path) -> None:
    for p in sorted(out.glob("*.json")):
        print(f"{p.stem}: batch vs token by token {json.loads(p.read_text(encoding='utf-8'))['batch_vs_stepwise']}")
    runs = {p.stem: (np.load(p), json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))["greedy"])
            for p in sorted(out.glob("*.npy"))}
    goldens = {c["name"]: c["tokens"] for c in json.loads(GOLDENS.read_text(encoding="utf-8"))["cases"]}
    runs["goldens"] = (None, goldens)
    runs.update(edgegen_runs())
    print(f"| pair | top-1 agreement over {N_POSITIONS} positions | first differing greedy token per case |")
    print("|---|---|---|")
    for (na, (la, ga)), (nb, (lb, gb)) in itertools.combinations(runs.items(), 2):
        agree = "-" if la is None or lb is None else f"{float((la.argmax(1) == lb.argmax(1)).mean()):.2%}"
        parts = ", ".join(f"{name} {first_difference(ga[name], gb[name])}" for name in goldens)
        print(f"| {na} vs {nb} | {agree} | {parts} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("tag")
    r.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("out", type=Path)
    args = ap.parse_args()
    record(args.tag, args.out) if args.cmd == "record" else compare(args.out)


if __name__ == "__main__":
    main()
