"""The MLX backend: the only package that imports mlx and mlx_lm.

Importing it first points MLX's CPU matmuls at a fast BLAS (see blas.py); this must happen before
anything imports mlx.core. On Linux it also keeps freed host memory in the heap (heap.py).
"""

from . import blas, heap

blas.preload()
heap.keep_freed_memory()
