"""Time the diffusion kernels (edgegen.kernels._cpp: conv2d, multihead_attention) against torch
(and onnxruntime's Conv when installed) at the shapes of a small SD-shaped UNet, at 1 and 2 threads.

    python benchmarks/bench_diffusion_kernels.py [--repeat 5] [--threads 1 2] [--only conv|attention|unet]

Prints milliseconds (best of --repeat) and GFLOP/s per shape; the NumPy side is not timed.
--only unet times one whole step of a small SD-shaped UNet (random diffusers weights, B=2, 32x32
latent, 128/256/512 channels, 77 text tokens): native (Ops "cpp") vs torch vs onnxruntime.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

CONV_SHAPES = [(2, 32, 32, 128), (2, 16, 16, 256), (2, 8, 8, 512)]      # B, H, W, C (Cin = Cout), 3x3 pad 1
ATTN_SHAPES = [(2, 1024, 1024, 128, 1), (2, 1024, 1024, 128, 8), (2, 1024, 77, 320, 8),  # B, Nq, Nk, C, heads
               (2, 4096, 4096, 320, 8)]


def best_ms(fn, repeat: int) -> float:
    fn()  # warm-up: scratch buffers, thread pools
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def ort_conv(x_nchw: np.ndarray, w: np.ndarray, b: np.ndarray, threads: int):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_nchw.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x_nchw})


def bench_conv(cpp, torch, threads: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    for b, h, w, c in CONV_SHAPES:
        x = rng.standard_normal((b, h, w, c)).astype(np.float32)
        wt = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32)
        wraw = np.ascontiguousarray(wt.transpose(0, 2, 3, 1).reshape(c, 9 * c)).view(np.uint8)
        out = np.empty((b, h, w, c), np.float32)
        flop = 2.0 * b * h * w * c * 9 * c
        ours = best_ms(lambda: cpp.conv2d(x, wraw, 0, bias, 3, 3, 1, 1, 1, 1, 1, 1, out, threads), repeat)
        xt, wtt, bt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(wt), torch.from_numpy(bias)
        with torch.inference_mode():
            theirs = best_ms(lambda: torch.nn.functional.conv2d(xt, wtt, bt, padding=1), repeat)
        ort_fn = ort_conv(xt.numpy(), wt, bias, threads)
        ort_ms = best_ms(ort_fn, repeat) if ort_fn else float("nan")
        print(f"conv3x3 B={b} {h}x{w} C={c:<4} t={threads}: edgegen {ours:7.2f} ms {flop / ours / 1e6:6.1f} GFLOP/s | "
              f"torch {theirs:7.2f} ms {flop / theirs / 1e6:6.1f} | ort {ort_ms:7.2f} ms {flop / ort_ms / 1e6:6.1f} | "
              f"edgegen/torch {ours / theirs:.2f}")


def bench_attention(cpp, torch, threads: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    for b, nq, nk, c, heads in ATTN_SHAPES:
        q = rng.standard_normal((b, nq, c)).astype(np.float32)
        k = rng.standard_normal((b, nk, c)).astype(np.float32)
        v = rng.standard_normal((b, nk, c)).astype(np.float32)
        out = np.empty_like(q)
        flop = 4.0 * b * nq * nk * c
        ours = best_ms(lambda: cpp.multihead_attention(q, k, v, heads, False, 0, out, threads), repeat)
        dh = c // heads
        qt, kt, vt = (torch.from_numpy(a).view(b, -1, heads, dh).transpose(1, 2) for a in (q, k, v))
        with torch.inference_mode():
            theirs = best_ms(lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt), repeat)
        print(f"attention B={b} Nq={nq} Nk={nk} C={c} heads={heads} t={threads}: edgegen {ours:7.2f} ms "
              f"{flop / ours / 1e6:6.1f} GFLOP/s | torch sdpa {theirs:7.2f} ms {flop / theirs / 1e6:6.1f} | "
              f"edgegen/torch {ours / theirs:.2f}")


UNET = dict(sample_size=32, in_channels=4, out_channels=4, block_out_channels=(128, 256, 512), layers_per_block=1,
            norm_num_groups=32, cross_attention_dim=320, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))


def bench_unet(torch, threads: int, repeat: int) -> None:
    import tempfile

    import diffusers

    from edgegen.diffusion.ops import Ops
    from edgegen.diffusion.unet import NativeUNet, UNetConfig
    torch.manual_seed(0)
    model = diffusers.UNet2DConditionModel(**UNET).eval()
    config = {**dict(model.config), "_class_name": "UNet2DConditionModel"}
    tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 32, 32)).astype(np.float32)
    cond = rng.standard_normal((2, 77, 320)).astype(np.float32)
    unet = NativeUNet.from_tensors(UNetConfig.from_hf_config(config), tensors, Ops("cpp", threads=threads))
    t = torch.tensor(500.0)
    with torch.inference_mode():
        step = lambda: model(torch.from_numpy(x), t, encoder_hidden_states=torch.from_numpy(cond)).sample  # noqa: E731
        err = np.abs(unet(x, 500.0, cond) - step().numpy()).max()
        torch_ms = best_ms(step, repeat)
    native_ms = best_ms(lambda: unet(x, 500.0, cond), repeat)
    ort_ms = float("nan")
    try:
        import onnxruntime as ort

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x, t, c):
                return self.m(x, t, encoder_hidden_states=c).sample
        path = f"{tempfile.mkdtemp()}/unet.onnx"
        torch.onnx.export(Wrap(model), (torch.from_numpy(x), t, torch.from_numpy(cond)), path, dynamo=False, opset_version=17)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: a for i, a in zip(sess.get_inputs(), (x, np.array(500.0, np.float32), cond))}
        ort_ms = best_ms(lambda: sess.run(None, feeds), repeat)
    except Exception as e:  # onnxruntime or the export missing: report torch only
        print(f"onnxruntime skipped: {e!r:.200}")
    print(f"UNet step t={threads}: native {native_ms:7.1f} ms | torch {torch_ms:7.1f} ms | ort {ort_ms:7.1f} ms "
          f"| native/ort {native_ms / ort_ms:.2f} (max |native - torch| {err:.1e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", choices=["conv", "attention", "unet"], default=None)
    args = ap.parse_args()
    import torch
    from edgegen.kernels import _cpp
    for threads in args.threads:
        torch.set_num_threads(threads)
        if args.only in (None, "conv"):
            bench_conv(_cpp, torch, threads, args.repeat)
        if args.only in (None, "attention"):
            bench_attention(_cpp, torch, threads, args.repeat)
        if args.only == "unet":
            bench_unet(torch, threads, args.repeat)


if __name__ == "__main__":
    main()
