"""CUDA kernels written with numba.cuda (decode and denoise hot paths); NumPy references live in
kernels/ref.py, kernels/quants.py and kernels/diffusion_ref.py. Imported only for device="cuda"."""
