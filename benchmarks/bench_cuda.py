"""CUDA decode and attention benchmark (numba.cuda kernels of edgegen.kernels.cuda).

    python benchmarks/bench_cuda.py            # on a GPU: TinyLlama-1.1B shape, Q4_0 and Q8_0
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda.py --smoke   # tiny shapes, CPU simulator

Prints, per weight type: decode tokens/s (one token, greedy id copied back; prompt processing is
not measured) and the achieved GB/s of the weight bytes read per token against the device's
measured copy bandwidth (a device-to-device copy: read + write bytes / time). Then the attention
kernel (one query, GQA) at contexts 512..16k beside torch.nn.functional.scaled_dot_product_attention
on the same data (skipped, with a message, when torch has no CUDA). Weights are random blocks built
in memory; no file is read. Times: mean ± sd over --reps runs after one warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from edgegen.constants import GGMLType, block_geometry

TINYLLAMA = dict(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_dim=5632, vocab_size=32000)
SMOKE = dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, vocab_size=32)


def random_tensor(qtype: GGMLType, rows: int, cols: int, rng):
    """A QTensor-like object of random valid blocks (f16 scales small and finite)."""
    from types import SimpleNamespace
    values, nbytes = block_geometry(qtype)
    blocks = rng.integers(0, 256, size=(rows * cols // values, nbytes), dtype=np.uint8)
    blocks[:, 0:2] = rng.uniform(0.001, 0.01, size=len(blocks)).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return SimpleNamespace(data=blocks.reshape(rows, -1), qtype=qtype, rows=rows, cols=cols)


def build(shape: dict, qtype: GGMLType, rng):
    from edgegen.constants import Arch, RopeStyle
    from edgegen.models.llama import Layer, LlamaConfig, Weights
    c = LlamaConfig(arch=Arch.LLAMA, head_dim=shape["dim"] // shape["n_heads"], context_length=4096, rms_eps=1e-5,
                    rope_theta=10000.0, n_rot=shape["dim"] // shape["n_heads"], rope_style=RopeStyle.NORMAL,
                    attn_bias=False, tied_embeddings=False, **shape)
    ones = np.ones(c.dim, np.float32)
    layers = tuple(Layer(ones, random_tensor(qtype, c.q_dim, c.dim, rng), random_tensor(qtype, c.kv_dim, c.dim, rng),
                         random_tensor(qtype, c.kv_dim, c.dim, rng), random_tensor(qtype, c.dim, c.q_dim, rng),
                         None, None, None, ones, random_tensor(qtype, c.ffn_dim, c.dim, rng),
                         random_tensor(qtype, c.ffn_dim, c.dim, rng), random_tensor(qtype, c.dim, c.ffn_dim, rng))
                   for _ in range(c.n_layers))
    embd = random_tensor(qtype, c.vocab_size, c.dim, rng)
    return c, Weights(embd, layers, ones, random_tensor(qtype, c.vocab_size, c.dim, rng))


def timed(fn, cuda, reps: int, warmup: bool = True) -> tuple[float, float]:
    if warmup:
        fn()
        cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.mean(times), (statistics.stdev(times) if reps > 1 else 0.0)


def copy_bandwidth(cuda, nbytes: int, reps: int) -> float:
    """GB/s of a device-to-device copy, counting the bytes read and written."""
    src = cuda.device_array(nbytes, np.uint8)
    dst = cuda.device_array(nbytes, np.uint8)
    mean, _ = timed(lambda: dst.copy_to_device(src), cuda, reps)
    return 2 * nbytes / mean / 1e9


def bench_decode(cuda, shape, qtype, reps, launch, n_ctx, warmup=True) -> None:
    from edgegen.models.llama_cuda import CudaLlama
    c, w = build(shape, qtype, np.random.default_rng(0))
    engine = CudaLlama(c, w, n_ctx, launch)
    cache = engine.new_cache()
    weight_bytes = sum(t.data.nbytes for ly in w.layers for t in (ly.wq, ly.wk, ly.wv, ly.wo, ly.w_gate, ly.w_up,
                                                                    ly.w_down)) + w.output.data.nbytes

    def one_token():
        cache.truncate(0)
        engine.step(cache, 1, 0)
        engine.greedy()
    mean, sd = timed(one_token, cuda, reps, warmup)
    print(f"decode {qtype.name:5s} {1 / mean:8.1f} tok/s ({mean * 1e3:.2f} ± {sd * 1e3:.2f} ms/token), "
          f"weights {weight_bytes / 1e6:.0f} MB -> {weight_bytes / mean / 1e9:.1f} GB/s")


def bench_attention(cuda, contexts, reps, launch, hq=32, hkv=4, dh=64, warmup=True) -> None:
    from edgegen.kernels.cuda import attention
    rng = np.random.default_rng(0)
    try:
        import torch
        use_torch = torch.cuda.is_available()
    except ImportError:
        use_torch = False
    if not use_torch:
        print("attention: torch with CUDA is not available; PyTorch SDPA column skipped")
    for n in contexts:
        q = rng.standard_normal((hq, dh)).astype(np.float32)
        k, v = (rng.standard_normal((hkv, n, dh)).astype(np.float32) for _ in range(2))
        dq, dk, dv = cuda.to_device(q), cuda.to_device(k), cuda.to_device(v)
        out = cuda.device_array((hq, dh), np.float32)
        scratch = attention.make_scratch(hq, dh, n, launch)
        mean, sd = timed(lambda: attention.attention(dq, dk, dv, n, dh ** -0.5, out, scratch, launch), cuda, reps, warmup)
        line = f"attention ctx {n:6d}: edgegen {mean * 1e6:8.1f} ± {sd * 1e6:.1f} us"
        if use_torch:
            tq = torch.from_numpy(q).cuda().view(1, hq, 1, dh)
            tk = torch.from_numpy(k).cuda().repeat_interleave(hq // hkv, 0).view(1, hq, n, dh)
            tv = torch.from_numpy(v).cuda().repeat_interleave(hq // hkv, 0).view(1, hq, n, dh)
            sdpa = torch.nn.functional.scaled_dot_product_attention
            t_mean, t_sd = timed(lambda: sdpa(tq, tk, tv), torch.cuda, reps)
            ref = sdpa(tq, tk, tv).view(hq, dh).cpu().numpy()
            err = float(np.abs(out.copy_to_host() - ref).max())
            line += f"   torch SDPA {t_mean * 1e6:8.1f} ± {t_sd * 1e6:.1f} us   max |diff| {err:.1e}"
        print(line)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny shapes (runs under NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args(argv)
    from edgegen.kernels.cuda.device import require_cuda
    cuda = require_cuda()
    from edgegen.kernels.cuda.attention import AttentionLaunch
    from edgegen.kernels.cuda.matvec import MatvecLaunch
    from edgegen.models.llama_cuda import CudaLaunch
    if a.smoke:   # the simulator runs a Python thread per CUDA thread and busy-polls: tiny blocks, fast switches
        sys.setswitchinterval(1e-4)
        launch = CudaLaunch(MatvecLaunch(lanes=1, rows=32, tile=256), AttentionLaunch(chunk=4, threads=16, max_head_dim=16), 16)
        shape, contexts, reps, nbytes = SMOKE, (6,), 1, 1 << 12
    else:
        launch, shape, contexts, reps, nbytes = CudaLaunch(), TINYLLAMA, (512, 1024, 2048, 4096, 8192, 16384), a.reps, 1 << 28
    print(f"device-to-device copy: {copy_bandwidth(cuda, nbytes, reps):.1f} GB/s (read + write)")
    for qtype in (GGMLType.Q4_0, GGMLType.Q8_0):
        bench_decode(cuda, shape, qtype, reps, launch, 16, not a.smoke)
    bench_attention(cuda, contexts, reps, launch.attention or AttentionLaunch(), *((2, 1, 16) if a.smoke else (32, 4, 64)),
                    warmup=not a.smoke)


if __name__ == "__main__":
    main()
