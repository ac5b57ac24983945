"""edgegen kernels: NumPy references (``ref``), C++ (``_cpp``) and Numba (``numba_cpu``) twins."""
