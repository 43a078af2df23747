"""MLX's view of the device memory, and the limits the trainer sets from the memory budget.

The memory limit is what keeps a run inside its budget: MLX's scheduler allocates up to ~50
ops ahead of the computation (MAX_ACTIVE_TASKS in mlx/transforms.cpp), and only waits for
earlier work to finish (and free its buffers) once the active memory passes this limit. On
Metal the wired limit keeps the weights resident (mlx-lm does the same before generating).
"""

from __future__ import annotations

import mlx.core as mx


def _metal() -> bool:
    return bool(getattr(mx, "metal", None) and mx.metal.is_available())


def device_limits() -> dict:
    """What MLX reports about this device: name, memory_size and, on Metal, the GPU working
    set macOS recommends (raised by `sudo sysctl iogpu.wired_limit_mb=N`)."""
    info = dict(mx.device_info()) if hasattr(mx, "device_info") else {}
    return {"device_name": info.get("device_name") or info.get("architecture"),
            "metal": _metal(),
            "memory_size": info.get("memory_size"),
            "max_recommended_working_set_size": info.get("max_recommended_working_set_size")}


def apply_budget(budget_bytes: int) -> dict:
    """Set MLX's memory limit to the budget, and on Metal the wired limit to the budget capped
    at the recommended working set (MLX refuses a wired limit above it). A budget of 1 byte
    only throttles: measure.py's strict mode (MLX then waits for work in flight at one CPU
    dispatch in ten, not after every op; benchmarks/README.md, planner28a)."""
    budget = int(budget_bytes)
    mx.set_memory_limit(budget)
    wired = None
    if _metal() and budget > 1:
        rec = device_limits().get("max_recommended_working_set_size")
        wired = min(budget, int(rec)) if rec else budget
        mx.set_wired_limit(wired)
    return {"memory_limit": budget, "wired_limit": wired}
