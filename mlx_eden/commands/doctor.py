"""`eden-mlx doctor`: what this machine will train on, measured (BLAS, matmul rate, device)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time

import click

EXTRAS = {"torch": "torch", "peft": "peft", "llama-cpp-python": "llama_cpp", "gguf": "gguf"}


def numpy_matmul_gflops(n: int = 1024, repeats: int = 4) -> float:
    """numpy's fp32 matmul rate: a reference for MLX's on the same cores."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2.0 * n**3 * repeats / (time.perf_counter() - start))
    return best / 1e9


def collect() -> dict:
    """Every fact the report shows. MLX is imported through the backend package so the fast
    BLAS is preloaded first, exactly as in training."""
    from importlib import metadata

    from ..backends.mlx import probe

    facts = {"platform": f"{platform.system()} {platform.release()} {platform.machine()}",
             "python": platform.python_version(), "cpus": os.cpu_count(),
             "versions": {}, "extras": {}}
    for pkg in ("mlx-eden", "mlx", "mlx-lm", "numpy", "transformers"):
        try:
            facts["versions"][pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            facts["versions"][pkg] = None
    for name, module in EXTRAS.items():
        facts["extras"][name] = importlib.util.find_spec(module) is not None
    facts.update(probe.device())
    facts["kmp_blocktime"] = os.environ.get("KMP_BLOCKTIME")
    facts["mlx_matmul_gflops"] = round(probe.matmul_gflops(), 1)
    facts["numpy_matmul_gflops"] = round(numpy_matmul_gflops(), 1)
    facts["mlx_exp_melem_per_sec"] = round(probe.exp_rate(), 1)
    return facts


def _lines(f: dict) -> list[tuple[str, str]]:
    extras = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in f["extras"].items())
    versions = ", ".join(f"{k} {v or '-'}" for k, v in f["versions"].items())
    hint = ""
    if f["blas"].startswith("reference"):
        hint = "  (slow: unset EDEN_BLAS or pip install mkl)"
    return [("platform", f"{f['platform']}, {f['cpus']} CPUs, Python {f['python']}"),
            ("versions", versions),
            ("device", f"{f['device']} {f['name']}".strip() + (", Metal" if f["metal"] else "")),
            ("BLAS", f["blas"] + (f", KMP_BLOCKTIME={f['kmp_blocktime']}"
                                  if f["kmp_blocktime"] is not None else "") + hint),
            ("fp32 matmul", f"MLX {f['mlx_matmul_gflops']} GFLOP/s, numpy "
                            f"{f['numpy_matmul_gflops']} GFLOP/s (1024x1024, best of 5)"),
            ("exp", f"MLX {f['mlx_exp_melem_per_sec']} M elements/s"),
            ("extras", extras)]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
def doctor(as_json):
    """Report the device, which BLAS MLX uses and the measured matmul rate."""
    facts = collect()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    width = max(len(k) for k, _ in _lines(facts))
    for key, value in _lines(facts):
        click.echo(f"{key.ljust(width)}  {value}")
    sys.stdout.flush()
