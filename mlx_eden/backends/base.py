"""The seam between the backend-neutral loop and a framework (MLX or PyTorch).

The loop owns iteration, schedules, evaluation, early stopping, checkpoints and events; a backend
owns the model, autograd, compilation, dtypes and the optimizer. Batches cross as plain numpy.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..data.batching import Batch
from ..errors import UserError


@dataclass
class StepResult:
    """One optimizer step: mean loss over its trained tokens, the tokens, the pre-clip grad norm."""

    loss: float
    tokens: int
    grad_norm: float


@dataclass
class ModelInfo:
    """What the loop, run.json and the dashboard report about the loaded model."""

    path: str
    model_type: str
    params_total: int
    trainable_params: int
    quantized_bits: int | None
    device: str
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def setup(self, recipe, model_dir: Path) -> ModelInfo:
        """Load the base, quantize it if the recipe says so, add adapters, build the optimizer."""

    def train_step(self, batches: list[Batch], lr: float, step: int) -> StepResult:
        """One optimizer step over `batches` (gradient accumulation), loss normalised by the
        trained tokens of all of them. `step` (1-based) seeds dropout, so resume is exact."""

    def eval_loss(self, batch: Batch) -> tuple[float, int]:
        """(summed loss, trained tokens) of one batch, no gradients, no dropout."""

    def save_adapter(self, directory: Path) -> None:
        """adapters.safetensors + adapter_config.json in mlx-lm's format."""

    def save_state(self, directory: Path) -> None:
        """Optimizer state (everything the next step needs besides the adapter)."""

    def load_state(self, directory: Path) -> None:
        """Restore adapter weights and optimizer state written by save_adapter/save_state."""

    def memory(self) -> dict:
        """Current memory figures in bytes: active, peak, cache (where known) and rss."""


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def choose_backend(requested: str, qlora: bool = False) -> tuple[str, str]:
    """Resolve `train.backend` to ("mlx"|"torch", why). auto = mlx on Apple Silicon; elsewhere
    torch when installed (MLX's CPU backend is far slower on x86), else mlx with a hint.
    `qlora`: the recipe quantizes the base (model.quantize.bits), which only mlx can train."""
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    if requested == "torch":
        if not has_module("torch") or not has_module("peft"):
            raise UserError("the torch backend needs the torch extra",
                            hint="pip install 'mlx-eden[torch]'")
        return "torch", "requested by the recipe or --backend"
    if requested == "mlx":
        return "mlx", "requested by the recipe or --backend"
    if apple:
        return "mlx", "auto: Apple Silicon"
    if qlora:
        return "mlx", "auto: QLoRA (model.quantize.bits) trains on the mlx backend only"
    if has_module("torch") and has_module("peft") and has_module("mlx_eden.backends.torch.backend"):
        return "torch", "auto: not Apple Silicon and torch is installed (faster on x86 CPUs)"
    return "mlx", ("auto: torch is not installed; on x86 CPUs the torch backend is much faster "
                   "(pip install 'mlx-eden[torch]')")


def hide_torch_from_transformers() -> None:
    """For a process that trains on MLX: make `torch` unimportable before transformers loads.

    mlx-lm imports transformers, and transformers imports torch whenever it can find it (3-5 s
    of start-up here, and memory) although the MLX path never uses it. `find_spec` treats a
    None entry in sys.modules as "not installed". Only for whole CLI processes: never call it
    in a process that may still want torch."""
    import sys

    if "torch" not in sys.modules and "transformers" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]


def load_backend(name: str) -> Backend:
    module = importlib.import_module(f"mlx_eden.backends.{name}.backend")
    return module.create()
