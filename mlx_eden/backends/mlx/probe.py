"""Measured facts about MLX on this machine: device, BLAS, matmul and exp rates.

Used by `eden-mlx doctor` and the throughput benchmark (the matmul rate is the ceiling that
model-FLOPs utilisation is measured against)."""

from __future__ import annotations

import time

import mlx.core as mx

from . import blas


def _best_rate(run, work: float, repeats: int, rounds: int = 5) -> float:
    """Best of `rounds` timings of `repeats` calls: the machine is shared, so the fastest round
    is the closest to what the hardware can do."""
    run()  # warm-up (and first-call set-up)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        best = max(best, work * repeats / (time.perf_counter() - start))
    return best


def matmul_gflops(n: int = 1024, repeats: int = 4) -> float:
    """fp32 (n x n) @ (n x n) rate of MLX's default device, in GFLOP/s."""
    a = mx.random.normal((n, n), key=mx.random.key(0))
    b = mx.random.normal((n, n), key=mx.random.key(1))
    mx.eval(a, b)
    return _best_rate(lambda: mx.eval(a @ b), 2.0 * n**3, repeats) / 1e9


def exp_rate(n: int = 1 << 22, repeats: int = 2) -> float:
    """Element-wise fp32 exp, in million elements per second (softmax and the loss use it)."""
    x = mx.random.normal((n,), key=mx.random.key(2))
    mx.eval(x)
    return _best_rate(lambda: mx.eval(mx.exp(x)), float(n), repeats) / 1e6


def device() -> dict:
    info = mx.device_info() if hasattr(mx, "device_info") else {}
    return {"device": str(mx.default_device()),
            "name": str(info.get("device_name") or info.get("architecture") or ""),
            "metal": bool(mx.metal.is_available()) if hasattr(mx, "metal") else False,
            "blas": blas.active_blas()}
