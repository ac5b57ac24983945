"""Image generation: the denoising loop (loop.py); pipelines, native kernels and backends follow."""
