"""What the memory plan hands to a training run: a small typed object instead of a dict.

`eden-mlx train` plans the run's memory (memory/preflight.py) before loading anything; the run
needs only three facts from it: the predicted peak and the budget (shown on the dashboard and
stored in run.json for the report) and the device the plan was for. The budget in bytes also
goes to the backend's MemoryProbe (MLX's memory limit). Figures are GiB (mlx_eden/units.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..units import to_gib


@dataclass(frozen=True)
class RunPlan:
    """The memory plan as the run uses it (bytes; `*_gb` are GiB, rounded for display)."""

    predicted_peak_bytes: int
    budget_bytes: int
    device: str

    @property
    def predicted_peak_gb(self) -> float:
        return round(to_gib(self.predicted_peak_bytes), 3)

    @property
    def budget_gb(self) -> float:
        return round(to_gib(self.budget_bytes), 3)

    def run_json(self) -> dict:
        """The run.json keys (read back by ui/rundata.py)."""
        return {"predicted_peak_gb": self.predicted_peak_gb, "budget_gb": self.budget_gb,
                "budget_bytes": self.budget_bytes, "memory_device": self.device}
