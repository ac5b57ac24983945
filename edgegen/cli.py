"""The ``edgegen`` command: parse, call the API, print. Errors become one line on stderr."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from collections import Counter

import edgegen
from edgegen.bench.cli import add_bench_parser, cmd_bench
from edgegen.cli_image import add_image_parser, cmd_image
from edgegen.cli_perplexity import add_perplexity_parser, cmd_perplexity
from edgegen.cli_pull import add_pull_parser, cached_chat_model, cmd_pull
from edgegen.errors import EdgegenError, ModelFileError, UsageError
from edgegen.kernels import KERNEL_NAMES, simd_summary

CONVERT_QUANTS = ("f32", "f16", "q8_0", "q4_0", "q4_k_m")
ONNX_QUANTS = ("fp32", "fp16", "int8", "int4")   # converters/onnx_export.QUANTS
BUNDLED_TEXT_MODEL = "kjv-llama-q8_0.gguf"   # docs/models/text.md; trained by tools/train_text.py


def default_model() -> str:
    """The text model bundled inside the package: a 6.9M-parameter Llama trained on the KJV."""
    from importlib.resources import files
    path = files("edgegen") / "data" / BUNDLED_TEXT_MODEL
    if not path.is_file():
        raise ModelFileError(f"the bundled model {BUNDLED_TEXT_MODEL} is missing from the installed package; "
                             "pass a .gguf path")
    return str(path)


def _model_options(p: argparse.ArgumentParser) -> None:
    from edgegen.backends import BACKENDS
    p.add_argument("--backend", choices=tuple(BACKENDS), default="native",
                   help="native: edgegen's kernels (default); llama.cpp: llama.cpp's logits, edgegen's sampler")
    p.add_argument("--threads", "-t", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--kernels", choices=KERNEL_NAMES, default="cpp",
                   help="kernel implementation (cpp: C++ with the best SIMD this CPU runs; ggml / ggml-avx512: "
                        "llama.cpp's x86 AVX2 / AVX-512 arithmetic, slow, Q4_1/Q8_0 only)")
    p.add_argument("--ctx", type=int, default=None, help="context size (KV cache) in tokens")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: weights and KV cache on an NVIDIA GPU (numba.cuda; native backend)")


def _sampling_options(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("sampling (llama.cpp's names and semantics)")
    s.add_argument("--temperature", "--temp", type=float, default=0.0, help="0 = greedy (default)")
    s.add_argument("--top-k", type=int, default=0, help="0 = off")
    s.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    s.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    s.add_argument("--typical-p", type=float, default=1.0, help="1 = off")
    s.add_argument("--repeat-penalty", type=float, default=1.0, help="1 = off")
    s.add_argument("--presence-penalty", type=float, default=0.0)
    s.add_argument("--frequency-penalty", type=float, default=0.0)
    s.add_argument("--repeat-last-n", type=int, default=64, help="penalty window in tokens (0 = off, -1 = all)")
    s.add_argument("--mirostat", type=int, default=0, choices=(0, 2), help="2 = mirostat v2")
    s.add_argument("--mirostat-tau", type=float, default=5.0)
    s.add_argument("--mirostat-eta", type=float, default=0.1)
    s.add_argument("--logit-bias", action="append", default=[], metavar="ID=BIAS",
                   help="add BIAS to token ID's logit (repeatable; BIAS may be -inf)")
    s.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop before this text (repeatable)")
    s.add_argument("--seed", type=int, default=None)


def _sampling_kwargs(a: argparse.Namespace) -> dict:
    bias = {}
    for item in a.logit_bias:
        tid, sep, value = item.partition("=")
        try:
            bias[int(tid)] = float(value)
        except ValueError:
            raise UsageError(f"--logit-bias: expected ID=BIAS (e.g. 15043=-inf), found '{item}'") from None
        if not sep:
            raise UsageError(f"--logit-bias: expected ID=BIAS (e.g. 15043=-inf), found '{item}'")
    return dict(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p, typical_p=a.typical_p,
                repeat_penalty=a.repeat_penalty, presence_penalty=a.presence_penalty,
                frequency_penalty=a.frequency_penalty, repeat_last_n=a.repeat_last_n, mirostat=a.mirostat,
                mirostat_tau=a.mirostat_tau, mirostat_eta=a.mirostat_eta, logit_bias=bias, seed=a.seed,
                stop=tuple(a.stop))


def _read_text_arg(value: str | None, flag: str) -> str | None:
    """A flag's value, or the contents of the file it names."""
    if value is None:
        return None
    path = Path(value)
    try:
        if len(value) < 4096 and path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{flag}: cannot read {value}: {e.strerror}") from None
    return value


def _report(timing, model) -> None:
    t = timing
    engine = f"{model.kernels.name} kernels" if hasattr(model, "kernels") else f"{model.backend} backend"
    print(f"[prompt {t.prompt_tokens} tokens ({t.reused_tokens} cached), {t.prompt_tps:.1f} tok/s | "
          f"generated {t.generated_tokens} tokens, {t.decode_tps:.1f} tok/s | first token {t.first_token_seconds * 1e3:.0f} ms | "
          f"stop: {t.finish_reason} | {model.threads} threads, {engine}]", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgegen", description="Run generative models locally, offline.")
    parser.add_argument("--version", action="version", version=f"edgegen {edgegen.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="stream text from a GGUF model",
                       usage="edgegen generate [MODEL] PROMPT [options]")
    g.add_argument("args", nargs="+", metavar="[MODEL] PROMPT",
                   help="a .gguf file (default: the bundled KJV text model) and the prompt text")
    g.add_argument("-n", "--max-tokens", type=int, default=64, help="tokens to generate (default 64)")
    _sampling_options(g)
    g.add_argument("--json-schema", metavar="SCHEMA", help="constrain the output to this JSON schema (a file or inline JSON)")
    g.add_argument("--regex", help="constrain the output to this regular expression")
    g.add_argument("--grammar", metavar="FILE", help="constrain the output to this Lark grammar file")
    _model_options(g)

    ch = sub.add_parser("chat", help="chat with a GGUF model (its own chat template), turn by turn from stdin",
                        usage="edgegen chat [MODEL] [options]")
    ch.add_argument("model", nargs="?", default=None,
                    help="a .gguf file (default: SmolLM2-135M-Instruct if `edgegen pull` fetched it, else the bundled KJV text model)")
    ch.add_argument("--system", default=None, help="system message")
    ch.add_argument("-n", "--max-tokens", type=int, default=256, help="tokens per reply (default 256)")
    _sampling_options(ch)
    _model_options(ch)

    i = sub.add_parser("info", help="describe a GGUF model, an ONNX export folder or a diffusion pipeline folder")
    i.add_argument("model")

    c = sub.add_parser("convert", help="convert a Hugging Face checkpoint or a GGUF file")
    c.add_argument("hf_dir", help="folder with config.json, *.safetensors and tokenizer.json, or a .gguf file "
                   "(gguf: requantize; onnx: via a temporary Hugging Face folder)")
    c.add_argument("out", help="output file (gguf) or folder (onnx)")
    c.add_argument("--to", choices=("gguf", "onnx"), default="gguf")
    c.add_argument("--quant", default=None, help=f"gguf: {', '.join(CONVERT_QUANTS)} (default f16); "
                   f"onnx: {', '.join(ONNX_QUANTS)} (default fp32)")
    c.add_argument("--block-size", type=int, default=None, help="onnx int4: weights per 4-bit scale (default 32)")
    c.add_argument("--quiet", action="store_true", help="no progress bar or per-tensor report")
    add_image_parser(sub)
    add_perplexity_parser(sub)
    add_bench_parser(sub)
    add_pull_parser(sub)
    return parser


def _load(a: argparse.Namespace, path: str):
    options = dict(threads=a.threads, n_ctx=a.ctx)
    if a.backend == "native":
        options["kernels"] = a.kernels
    elif a.kernels != "cpp":
        raise UsageError(f"--kernels applies to the native backend only, found --backend {a.backend}")
    return edgegen.load(path, backend=a.backend, device=getattr(a, "device", "cpu"), **options)


def cmd_generate(a: argparse.Namespace) -> None:
    if len(a.args) > 2:
        raise UsageError(f"generate takes [MODEL] PROMPT, found {len(a.args)} arguments (quote the prompt)")
    model_path, a.prompt = (a.args[0], a.args[1]) if len(a.args) == 2 else (default_model(), a.args[0])
    options = _sampling_kwargs(a)
    options.update(json_schema=_read_text_arg(a.json_schema, "--json-schema"), regex=a.regex,
                   grammar=_read_text_arg(a.grammar, "--grammar"))
    model = _load(a, model_path)
    stream = model.generate(a.prompt, max_tokens=a.max_tokens, **options)
    sys.stdout.write(a.prompt)
    for tok in stream:
        sys.stdout.write(tok.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    _report(stream.timing, model)


def cmd_chat(a: argparse.Namespace) -> None:
    model = _load(a, a.model or cached_chat_model() or default_model())
    options = _sampling_kwargs(a)
    messages = [{"role": "system", "content": a.system}] if a.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        stream = model.chat(messages, max_tokens=a.max_tokens, **options)
        reply = []
        for tok in stream:
            reply.append(tok.text)
            sys.stdout.write(tok.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
        _report(stream.timing, model)


def _info_onnx(folder: Path) -> None:
    from edgegen.backends.onnxruntime import read_manifest
    from edgegen.gguf_meta import read_metadata
    from edgegen.tokenizer import Tokenizer
    m = read_manifest(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    q, ex = m.get("quantization") or {}, m.get("exporter") or {}
    block = f", block {q['block_size']}" if q.get("block_size") else ""
    tok_path = folder / m["tokenizer_file"]
    tok = Tokenizer.from_gguf(tok_path)
    template = read_metadata(tok_path).get("tokenizer.chat_template")
    print(f"folder        {folder} ({sum(p.stat().st_size for p in files) / 1e6:.1f} MB)")
    print(f"format        ONNX for onnxruntime ({m['format']} v{m['version']}; {ex.get('tool', '?')}, "
          f"optimum-onnx {ex.get('optimum_onnx_version', '?')}, task {ex.get('task', '?')})")
    print(f"architecture  {m.get('architecture')} ({m.get('hf_architecture', '?')}); context {m['context_length']}; "
          f"vocab {m.get('vocab_size')}")
    print(f"quantization  {q.get('type', '?')}{block} ({q.get('tool', '?')}, onnxruntime {q.get('onnxruntime_version', '?')})")
    print(f"source        {m.get('source', '?')}")
    print(f"files         {', '.join(f'{p.name} {p.stat().st_size / 1e6:.2f} MB' for p in files)}")
    print(f"tokenizer     {tok.describe()}")
    print(f"chat template {f'from the export ({len(template)} characters)' if isinstance(template, str) and template.strip() else 'none (chat uses the ChatML fallback)'}")


def _info_diffusion(path: Path) -> None:
    from edgegen.diffusion.folder import read_folder
    from edgegen.diffusion.onnx_components import is_onnx_diffusion_folder, read_diffusion_manifest
    f = read_folder(path)
    print(f"folder        {path} (diffusion pipeline)")
    print(f"components    {', '.join(f'{k} ({v})' for k, v in f.classes.items())}")
    unet = f.configs.get("unet", {})
    print(f"unet          block_out_channels {unet.get('block_out_channels')}, sample size {unet.get('sample_size')}, "
          f"cross-attention dim {unet.get('cross_attention_dim', '-')}, classes {unet.get('num_class_embeds') or '-'}")
    print(f"scheduler     {f.scheduler_config.get('_class_name', '?')}; VAE factor {f.vae_scale_factor}, "
          f"scaling factor {f.scaling_factor:g}")
    if is_onnx_diffusion_folder(path):
        m = read_diffusion_manifest(path)
        print("onnx          " + ", ".join(f"{k} {c.get('quant', '?')} {c.get('size_bytes', 0) / 1e6:.1f} MB"
                                           for k, c in m.get("components", {}).items()))


def cmd_info(a: argparse.Namespace) -> None:
    if Path(a.model).is_dir() and (Path(a.model) / "model_index.json").is_file():
        return _info_diffusion(Path(a.model))
    if Path(a.model).is_dir():
        return _info_onnx(Path(a.model))
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
    template = f.metadata.get("tokenizer.chat_template")
    print(f"chat template {f'from the file ({len(template)} characters)' if isinstance(template, str) and template.strip() else 'none (chat uses the ChatML fallback)'}")
    print(f"kernels       {simd_summary()}")


def cmd_convert(a: argparse.Namespace) -> None:
    quants, default = {"gguf": (CONVERT_QUANTS, "f16"), "onnx": (ONNX_QUANTS, "fp32")}[a.to]
    quant = a.quant or default
    if quant not in quants:
        raise UsageError(f"--quant: expected one of {', '.join(quants)} with --to {a.to}, found '{quant}'")
    if a.block_size is not None and quant != "int4":
        raise UsageError(f"--block-size applies to --to onnx --quant int4 only, found --to {a.to} --quant {quant}")
    if a.to == "onnx" and (Path(a.hf_dir) / "model_index.json").is_file():
        from edgegen.converters.diffusers_onnx import QUANTS as DIFFUSERS_QUANTS, export_diffusers_onnx
        if quant not in DIFFUSERS_QUANTS:
            raise UsageError(f"--quant: expected one of {', '.join(DIFFUSERS_QUANTS)} for a diffusers folder "
                             f"with --to onnx, found '{quant}'")
        report = export_diffusers_onnx(a.hf_dir, a.out, quant=quant, progress=not a.quiet)
    elif a.to == "onnx" and Path(a.hf_dir).suffix == ".gguf":
        from edgegen.converters.gguf_to_hf import convert_gguf_to_onnx
        report = convert_gguf_to_onnx(a.hf_dir, a.out, quant=quant, block_size=a.block_size or 32, progress=not a.quiet)
    elif a.to == "onnx":
        from edgegen.converters.onnx_export import export_onnx
        report = export_onnx(a.hf_dir, a.out, quant=quant, block_size=a.block_size or 32, progress=not a.quiet)
    elif Path(a.hf_dir).suffix == ".gguf":
        from edgegen.converters.gguf_requant import requantize_gguf
        report = requantize_gguf(a.hf_dir, a.out, quant=quant, progress=not a.quiet)
    else:
        from edgegen.converters.hf_to_gguf import convert_hf_to_gguf
        report = convert_hf_to_gguf(a.hf_dir, a.out, quant=quant, progress=not a.quiet)
    if not a.quiet:
        print(report.summary())


COMMANDS = {"generate": cmd_generate, "chat": cmd_chat, "info": cmd_info, "convert": cmd_convert, "image": cmd_image,
            "bench": cmd_bench, "pull": cmd_pull, "perplexity": cmd_perplexity}


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
