"""What the benchmarks that run eden-mlx and mlx_lm.lora as child processes share: the
locally built models, the LoRA targets, the same BLAS for both tools, and one wrapper that
runs a tool and stamps every line it prints (so step times are read the same way for both).

Not a benchmark itself (`make bench` skips `_*.py`); imported by train_throughput.py and
whole_run.py, which run from this folder (`python benchmarks/NAME.py` puts it on sys.path).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The seven projections of a Qwen2 layer, as mlx_lm.lora's `lora_parameters.keys` names them.
KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# TinySpec fields of the locally built models (random weights: only the shapes matter).
TINY: dict = {}
QWEN2_40M = dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, vocab=32768)
QWEN2_150M = dict(hidden=768, layers=14, heads=12, kv_heads=2, intermediate=2304, vocab=65536)

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
STAMP = re.compile(r"^@([\d.]+) (.*)$")
# mlx_lm.lora's per-step report line (`steps_per_report: 1`): step, loss, arrow, trained
# tokens so far, peak memory in k. EDEN_STEP: eden-mlx's plain log (--no-dashboard).
MLX_LM_STEP = re.compile(r"^\s*(\d+)\s+[\d.]+ [▼▲]\s+([\d,]+)\s+([\d.]+)k\s*$")
MLX_LM_VAL = re.compile(r"^\s*\d+\s+val\s")
EDEN_STEP = re.compile(r"^step=(\d+)/\d+ ")
PEAK = re.compile(r"BENCH peak_bytes=(\d+) mkl=(\w+)")

# One wrapper for both tools: runs a module as `python -m` would, stamps every output line with
# the time it was written (both tools print one line per step; mlx_lm's own tok/s is rounded too
# coarsely), and prints MLX's allocator peak at exit (the highest, across eden's per-phase resets).
WRAPPER = """
import atexit, runpy, sys, time
sys.modules["torch"] = None  # as eden-mlx does: transformers would import torch for nothing

class Stamped:
    def __init__(self, f):
        self.f, self.fresh = f, True
    def write(self, s):
        for part in s.splitlines(keepends=True):
            if self.fresh:
                self.f.write(f"@{time.perf_counter():.6f} ")
            self.f.write(part)
            self.fresh = part.endswith("\\n")
        return len(s)
    def __getattr__(self, name):
        return getattr(self.f, name)

import mlx.core as mx  # after the BLAS preload (LD_PRELOAD, or EDEN_BLAS=reference for both)
peaks = [0]
reset = mx.reset_peak_memory
def reset_peak():  # eden resets the peak per phase of a step: keep the highest seen
    peaks.append(mx.get_peak_memory())
    reset()
mx.reset_peak_memory = reset_peak

def report():
    mkl = "libmkl_rt" in open("/proc/self/maps").read()
    peak = max(peaks + [mx.get_peak_memory()])
    sys.stdout.write(f"BENCH peak_bytes={peak} mkl={mkl}\\n")
    sys.stdout.flush()

sys.stdout = Stamped(sys.stdout)
atexit.register(report)
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def blas_env(mode: str = "mkl") -> dict:
    """Environment that gives a child MLX process the BLAS `mode`: "mkl" preloads the venv's
    libmkl_rt.so with eden's KMP_BLOCKTIME (what eden does in-process; mlx_lm needs LD_PRELOAD), "none"
    the wheel's bundled reference BLAS (eden's own preload off too)."""
    from mlx_eden.backends.mlx import blas

    if mode == "none" or not blas.mkl_library():
        return {"EDEN_BLAS": "reference"}
    return {"LD_PRELOAD": blas.mkl_library(), "KMP_BLOCKTIME": blas.KMP_BLOCKTIME}


def run_stamped(module_argv: list[str], work: Path, env: dict) -> dict:
    """Run `python -m MODULE ARGS...` under the stamping wrapper in `work`, output to
    work/log.txt; raise with the log's tail if it fails. Returns the whole-process wall time,
    peak RSS (wait4: this child only), the stamped lines [(seconds, text)], MLX's peak and
    whether MKL was loaded."""
    log = work / "log.txt"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *module_argv], stdout=out,
                                stderr=subprocess.STDOUT, cwd=work,
                                env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    text = ANSI.sub("", log.read_text())
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{module_argv[:2]} failed; see {log}:\n{text[-2000:]}")
    lines = [(float(s), line) for s, line in (m.groups() for m in map(STAMP.match,
                                                                        text.splitlines()) if m)]
    peak = PEAK.search(text)
    return {"wall": wall, "rss_bytes": usage.ru_maxrss * 1024, "lines": lines,
            "peak_bytes": int(peak.group(1)), "mkl": peak.group(2) == "True", "text": text}


def matmul_rate(env: dict) -> tuple[float, str]:
    """MLX's fp32 1024^2 matmul rate (GFLOP/s, best of 5) in a child with `env`, and its BLAS."""
    code = ("import mlx_eden.backends.mlx; from mlx_eden.backends.mlx import probe, blas; "
            "print(probe.matmul_gflops(), blas.active_blas())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
    rate, which = out.stdout.split(maxsplit=1)
    return round(float(rate), 2), which.strip()
