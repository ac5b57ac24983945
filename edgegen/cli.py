"""The ``edgegen`` command: parse, call the API, print. Errors become one line on stderr."""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import edgegen
from edgegen.errors import EdgegenError, ModelFileError, UsageError
from edgegen.kernels import KERNEL_NAMES, simd_summary

CONVERT_QUANTS = ("f32", "f16", "q8_0", "q4_0", "q4_k_m")
DEMO_MODEL = "demo-tiny-llama.gguf"


def default_model() -> str:
    """The model bundled inside the package."""
    from importlib.resources import files
    path = files("edgegen") / "data" / DEMO_MODEL
    if not path.is_file():
        raise ModelFileError(f"the bundled model {DEMO_MODEL} is missing from the installed package; pass a .gguf path")
    return str(path)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", "-t", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--kernels", choices=KERNEL_NAMES, default="cpp",
                   help="kernel implementation (cpp: C++ with the best SIMD this CPU runs)")
    p.add_argument("--ctx", type=int, default=None, help="context size (KV cache) in tokens")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgegen", description="Run generative models locally, offline.")
    parser.add_argument("--version", action="version", version=f"edgegen {edgegen.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="stream text from a GGUF model",
                       usage="edgegen generate [MODEL] PROMPT [options]")
    g.add_argument("args", nargs="+", metavar="[MODEL] PROMPT",
                   help="a .gguf file (default: the bundled demo model) and the prompt text")
    g.add_argument("-n", "--max-tokens", type=int, default=64, help="tokens to generate (default 64)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=None)
    _model_options(g)

    i = sub.add_parser("info", help="describe a GGUF model")
    i.add_argument("model")

    c = sub.add_parser("convert", help="convert a Hugging Face checkpoint")
    c.add_argument("hf_dir", help="folder with config.json, *.safetensors and tokenizer.json")
    c.add_argument("out", help="output file")
    c.add_argument("--to", choices=("gguf",), default="gguf")
    c.add_argument("--quant", choices=CONVERT_QUANTS, default="f16")
    c.add_argument("--quiet", action="store_true", help="no progress bar or per-tensor report")
    return parser


def cmd_generate(a: argparse.Namespace) -> None:
    from edgegen.generate import Timing
    if len(a.args) > 2:
        raise UsageError(f"generate takes [MODEL] PROMPT, found {len(a.args)} arguments (quote the prompt)")
    model_path, a.prompt = (a.args[0], a.args[1]) if len(a.args) == 2 else (default_model(), a.args[0])
    model = edgegen.load(model_path, threads=a.threads, kernels=a.kernels, n_ctx=a.ctx)
    timings: list[Timing] = []
    sys.stdout.write(a.prompt)
    for tok in model.generate(a.prompt, max_tokens=a.max_tokens, temperature=a.temperature,
                              top_k=a.top_k, top_p=a.top_p, seed=a.seed, timings=timings):
        sys.stdout.write(tok.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    t = timings[0]
    print(f"[prompt {t.prompt_tokens} tokens, {t.prompt_tps:.1f} tok/s | generated {t.generated_tokens} tokens, "
          f"{t.decode_tps:.1f} tok/s | {model.threads} threads, {model.kernels.name} kernels]", file=sys.stderr)


def cmd_info(a: argparse.Namespace) -> None:
    from edgegen.gguf_file import GGUFFile
    from edgegen.models.llama import LlamaConfig
    from edgegen.tokenizer import Tokenizer
    f = GGUFFile.open(a.model)
    c = LlamaConfig.from_gguf(f)
    tok = Tokenizer.from_metadata(f.metadata, source=f.path.name)
    n_params = sum(t.rows * t.cols for t in f.tensors.values())
    types = Counter(t.qtype.name for t in f.tensors.values())
    print(f"file          {f.path} ({f.file_size / 1e6:.1f} MB)")
    print(f"name          {f.metadata.get('general.name', '-')}")
    print(f"architecture  {c.arch.value}: {c.n_layers} layers, hidden {c.dim}, heads {c.n_heads} (kv {c.n_kv_heads}), "
          f"head size {c.head_dim}, ffn {c.ffn_dim}")
    print(f"context       {c.context_length}; rope base {c.rope_theta:g} ({c.rope_style.name.lower()}), rms eps {c.rms_eps:g}")
    print(f"parameters    {n_params / 1e6:.2f} M; vocab {c.vocab_size}; tied embeddings {'yes' if c.tied_embeddings else 'no'}")
    print(f"tensor types  {', '.join(f'{k} x{v}' for k, v in sorted(types.items()))}")
    print(f"tokenizer     {tok.describe()}")
    print(f"kernels       {simd_summary()}")


def cmd_convert(a: argparse.Namespace) -> None:
    from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
    report = convert_hf_to_gguf(a.hf_dir, a.out, quant=a.quant, progress=not a.quiet)
    if not a.quiet:
        print(report.summary())


COMMANDS = {"generate": cmd_generate, "info": cmd_info, "convert": cmd_convert}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except EdgegenError as e:
        print(f"edgegen: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgegen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
