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
a shared 2-core box). Not spinning at all has its own cost: every MKL call then wakes its worker
through the kernel, and a training step makes hundreds of small ones (the blockwise attention's
per-head matmuls, the LoRA products): the tiny whole-run epoch (60 steps) made ~100,000 context
switches. With 1 ms the worker stays awake across a step's run of matmuls and sleeps through
the longer element-wise stretches: that epoch's steps took 7.9-8.4 s against 9.7-11.7 s with 0
(3 alternated pairs, load 1.4 falling to 0.7; ~20,000 context switches), the 40M model's 9 steps
19.8-23.4 s (median 21.2) against 21.5-22.4 (21.9), 4 pairs. On a box whose cores are busy
with other work (load ~4) the spin cost more than it saved (15.7-18.3 s against 12.7-18.7).
We set it (unless the user did) before MKL starts.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

# Milliseconds MKL's OpenMP workers spin after a call (see the module docstring).
KMP_BLOCKTIME = "1"

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
