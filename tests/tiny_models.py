"""Tiny random-weight Hugging Face models for tests, built locally and deterministically.

    path = make_tiny_hf(tmp_path, arch="llama", tokenizer="spm")

writes a checkpoint folder as ``save_pretrained`` does (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json, special_tokens_map.json): weights from a fixed seed,
and a tokenizer trained with the ``tokenizers`` library on tests/data/corpus.txt.

- tokenizer="bpe": GPT-2-style byte-level BPE (ByteLevel pre-tokenizer and decoder), special
  tokens <|endoftext|> (BOS = EOS = pad), <|im_start|>, <|im_end|>, a ChatML chat template;
- tokenizer="spm": Llama-2-style BPE with byte fallback: <unk> <s> </s>, then <0x00>..<0xFF>,
  then the learned pieces; spaces become "▁" with one prepended (normalizer), BOS added.

RMSNorm weights (and qwen2's q/k/v biases) are drawn away from 1 (and 0) so that a converter
that drops or mixes them up changes the logits. Nothing is cached between calls.
"""
from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "corpus.txt"
DEFAULT_VOCAB = 512
INIT_STD = 0.08            # larger than HF's 0.02 so attention and logits are far from uniform
NORM_JITTER = 0.1          # norm weights ~ 1 + 0.1 N(0, 1)
BIAS_STD = 0.1
RMS_EPS = 1e-5
SPACE_MARK = "\u2581"
BPE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPM_SPECIALS = ["<unk>", "<s>", "</s>"]
N_BYTES = 256
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")


def _corpus_lines() -> list[str]:
    return [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_bpe_tokenizer(vocab: int = DEFAULT_VOCAB):
    """GPT-2-style byte-level BPE with ``vocab`` tokens in all."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=BPE_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus_lines(), trainer)
    return tok


def train_spm_tokenizer(vocab: int = DEFAULT_VOCAB):
    """Llama-2-style byte-fallback BPE with ``vocab`` tokens in all (specials, 256 bytes, pieces)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    normalizer = normalizers.Sequence([normalizers.Prepend(SPACE_MARK), normalizers.Replace(" ", SPACE_MARK)])
    # 1. Learn pieces that never span a word boundary: split before each "▁" while training only.
    learner = Tokenizer(models.BPE(unk_token=SPM_SPECIALS[0]))
    learner.normalizer = normalizer
    learner.pre_tokenizer = pre_tokenizers.Split(SPACE_MARK, behavior="merged_with_next")
    n_fixed = len(SPM_SPECIALS) + N_BYTES
    learner.train_from_iterator(_corpus_lines(), trainers.BpeTrainer(
        vocab_size=vocab - N_BYTES, special_tokens=SPM_SPECIALS, show_progress=False))
    learned = sorted(learner.get_vocab().items(), key=lambda item: item[1])
    pieces = [text for text, _ in learned if text not in SPM_SPECIALS]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(learner.to_str())["model"]["merges"]]
    # 2. Lay the vocabulary out as Llama's: specials, byte tokens, then pieces.
    byte_tokens = [f"<0x{b:02X}>" for b in range(N_BYTES)]
    ids = {text: i for i, text in enumerate(SPM_SPECIALS + byte_tokens + pieces)}
    assert len(ids) == n_fixed + len(pieces)
    tok = Tokenizer(models.BPE(vocab=ids, merges=merges, unk_token=SPM_SPECIALS[0], byte_fallback=True,
                               fuse_unk=True))
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE_MARK, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(SPM_SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPM_SPECIALS[1]} $A", pair=f"{SPM_SPECIALS[1]} $A {SPM_SPECIALS[1]} $B",
        special_tokens=[(SPM_SPECIALS[1], ids[SPM_SPECIALS[1]])])
    return tok


def _save_tokenizer(tok, kind: str, out_dir: Path) -> dict[str, int]:
    """Save with transformers' layout; returns the config.json special ids."""
    from transformers import PreTrainedTokenizerFast

    if kind == "bpe":
        eot = BPE_SPECIALS[0]
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eot, eos_token=eot, pad_token=eot,
                                       additional_special_tokens=BPE_SPECIALS[1:])
        fast.chat_template = CHATML
        eot_id = tok.token_to_id(eot)
        ids = {"bos_token_id": eot_id, "eos_token_id": eot_id}
    else:
        unk, bos, eos = SPM_SPECIALS
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, bos_token=bos, eos_token=eos)
        ids = {"bos_token_id": tok.token_to_id(bos), "eos_token_id": tok.token_to_id(eos)}
    fast.save_pretrained(out_dir)
    return ids


def _perturb(model, arch: str, seed: int) -> None:
    """Norm weights away from 1, qwen2 biases away from 0, from a generator of their own."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1 + NORM_JITTER * torch.randn(param.shape, generator=gen))
            elif name.endswith(".bias"):
                param.copy_(BIAS_STD * torch.randn(param.shape, generator=gen))


def make_tiny_hf(out_dir, arch: str = "llama", tokenizer: str = "bpe", seed: int = 0, hidden: int = 64,
                 layers: int = 2, heads: int = 4, kv_heads: int = 2, ffn: int = 128, vocab: int | None = None,
                 max_pos: int = 256, tie_embeddings: bool = False, rope_theta: float = 10000.0) -> Path:
    """Write a tiny random ``arch`` ("llama" | "qwen2") checkpoint with a ``tokenizer`` ("bpe" |
    "spm") tokenizer of ``vocab`` tokens (default 512) to ``out_dir``; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    families = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    trainers = {"bpe": train_bpe_tokenizer, "spm": train_spm_tokenizer}
    if arch not in families:
        raise ValueError(f"arch must be one of {sorted(families)}, got {arch!r}")
    if tokenizer not in trainers:
        raise ValueError(f"tokenizer must be one of {sorted(trainers)}, got {tokenizer!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = trainers[tokenizer](vocab or DEFAULT_VOCAB)
    special_ids = _save_tokenizer(tok, tokenizer, out)
    config_cls, model_cls = families[arch]
    config = config_cls(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_pos,
        rms_norm_eps=RMS_EPS, rope_theta=rope_theta, tie_word_embeddings=tie_embeddings,
        initializer_range=INIT_STD, torch_dtype="float32", **special_ids)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    _perturb(model, arch, seed)
    model.save_pretrained(out, safe_serialization=True)
    return out
