"""Run MLX's CPU matmuls on MKL instead of the reference BLAS bundled in the Linux wheel.

`mlx[cpu]` on Linux links a netlib reference BLAS (measured here: ~2-6 GFLOP/s for fp32 matmul on
2 cores). libmlx resolves `cblas_sgemm` through the global symbol scope first, so loading MKL's
single dynamic library with RTLD_GLOBAL *before* `mlx.core` is imported makes MLX call MKL
(80-180 GFLOP/s here, depending on the load) with no rebuild and no LD_PRELOAD. The `mkl` wheel (a Linux x86_64
dependency) ships the library under `sys.prefix/lib`. Set EDEN_BLAS=reference to opt out.

MKL's OpenMP threads spin for 200 ms after each call (KMP_BLOCKTIME) waiting for more work. MLX
runs its element-wise ops (softmax, SiLU, the loss) on one thread between matmuls, so on a small
CPU the spinning workers steal the very cores those ops need: a 40M-parameter LoRA step
(4 x 256 tokens) took ~16 s with the default and 10-12 s with KMP_BLOCKTIME=0 here (one A/B on
a shared 2-core box). We set it (unless the user did) before MKL starts.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

# Milliseconds MKL's OpenMP workers spin after a call (see the module docstring).
KMP_BLOCKTIME = "0"

_loaded: str | None = None


def _candidates() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable))}
    found = []
    for root in roots:
        found += sorted(glob.glob(os.path.join(root, "lib", "libmkl_rt.so*")))
    return found


def preload() -> str | None:
    """Load MKL globally if available and MLX is not imported yet; return its path or None."""
    global _loaded
    if _loaded or not sys.platform.startswith("linux") or os.environ.get("EDEN_BLAS") == "reference":
        return _loaded
    if "mlx.core" in sys.modules:
        return None  # too late: libmlx already bound its BLAS symbols
    # Read by MKL's OpenMP runtime when it starts, i.e. at the first BLAS call, after this.
    os.environ.setdefault("KMP_BLOCKTIME", KMP_BLOCKTIME)
    for path in _candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            _loaded = path
            break
        except OSError:
            continue
    return _loaded


def mkl_library() -> str | None:
    """Path of MKL's runtime library in this environment (for LD_PRELOAD in other processes)."""
    found = _candidates()
    return found[0] if found else None


def active_blas() -> str:
    """Which BLAS serves MLX in this process: 'mkl (path)', 'accelerate', or 'reference'."""
    if sys.platform == "darwin":
        return "accelerate"
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    if "libmkl_rt" in maps:
        return f"mkl ({_loaded or 'preloaded'})"
    return "reference (netlib)"
