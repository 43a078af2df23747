"""The seam between the backend-neutral rooms and a framework (MLX or PyTorch).

The loop owns iteration, schedules, evaluation, early stopping, checkpoints and events; a backend
owns the model, autograd, compilation, dtypes and the optimizer. Batches cross as plain numpy.

`Backend` declares everything any caller uses (tests/test_boundary.py checks that every method
called on a backend outside backends/ is declared here): training (`setup`, `train_step`,
`eval_loss`), persistence (`save_adapter` writes the backend's whole adapter folder, e.g. torch
adds `peft/`, so the loop never knows the layout), evaluation (`load_adapter`, `generate`,
`sequence_logprobs` for choice scoring and DPO/KTO), and the optional memory capability
(`memory_probe()` returns None where a backend has none: no `hasattr` probes, no attribute
assigned from outside). What a backend cannot train is refused by `registry.check_supported`
with the reason, before anything loads. `World` is the process group of data-parallel
training (one process unless a launcher started several).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..data.batching import Batch
from ..errors import UserError
from ..recipe import Recipe
from ..registry import check_supported, unsupported


@dataclass
class StepResult:
    """One optimizer step: mean loss over its trained tokens, the tokens, the pre-clip grad norm."""

    loss: float
    tokens: int
    grad_norm: float
    metrics: dict = field(default_factory=dict)  # DPO/KTO rewards etc. (objectives.finish)


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


@dataclass(frozen=True)
class World:
    """The process group a backend trains in (data parallel). One process: rank 0 of 1. Under
    `torchrun` (gloo) or `mlx.launch` (ring) size > 1; rank 0 alone owns the run directory.
    `launcher` names the launcher found in the environment, `hosts` the group's addresses."""

    rank: int = 0
    size: int = 1
    launcher: str | None = None  # "torchrun" | "mlx.launch"
    hosts: tuple[str, ...] = ()
    transport: str | None = None  # "gloo" | "ring" | "jaccl" (what the launcher set up)

    @property
    def owner(self) -> bool:
        """Whether this process writes the run directory, metrics and the dashboard."""
        return self.rank == 0


def _launch_file(path: str) -> list:
    try:
        return list(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"cannot read the file mlx.launch wrote ({e})", file=path,
                        hint="launch with mlx.launch --hostfile hosts.json") from None


def detect_world() -> World:
    """The process group the launcher announced in the environment, not yet joined:
    torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; mlx.launch sets MLX_RANK and, for the ring backend,
    MLX_HOSTFILE (one address list per rank), for JACCL (RDMA over Thunderbolt 5) MLX_IBV_DEVICES
    (one device list per rank) and MLX_JACCL_COORDINATOR."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in env:
        master = f"{env.get('MASTER_ADDR', '127.0.0.1')}:{env.get('MASTER_PORT', '')}"
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun", (master,), "gloo")
    if "MLX_RANK" in env and env.get("MLX_HOSTFILE"):
        hosts = _launch_file(env["MLX_HOSTFILE"])
        if len(hosts) > 1:
            flat = tuple(",".join(h) if isinstance(h, list) else str(h) for h in hosts)
            return World(int(env["MLX_RANK"]), len(hosts), "mlx.launch", flat, "ring")
    if "MLX_RANK" in env and env.get("MLX_IBV_DEVICES"):
        devices = _launch_file(env["MLX_IBV_DEVICES"])
        if len(devices) > 1:
            coordinator = (env.get("MLX_JACCL_COORDINATOR", ""),)
            return World(int(env["MLX_RANK"]), len(devices), "mlx.launch", coordinator, "jaccl")
    return World()


PhaseHook = Callable[[str], None]


class MemoryProbe(Protocol):
    """A backend's memory instruments (the MLX backend has them; torch on CPU has only RSS).

    The profiler (run/profiler.py) passes its hook in; the backend calls it with a phase name
    ("forward", "backward", "update", "eval") when that phase's work is evaluated."""

    def set_phase_hook(self, hook: PhaseHook | None) -> None:
        """Call `hook(phase)` at the end of every phase from now on; None stops it."""

    def phase_memory(self) -> dict:
        """Memory now (bytes: active, cache, rss) and the peak since the previous call."""

    def set_budget(self, budget_bytes: int) -> dict:
        """Make the framework's allocator honour the planner's budget; returns what it set."""


class Backend(Protocol):
    name: str
    world: World

    def setup(self, recipe: Recipe, model_dir: Path) -> ModelInfo:
        """Load the base, quantize it if the recipe says so, add adapters, build the optimizer.
        Refuses (UserError) a recipe choice this backend lacks, before loading anything."""

    def train_step(self, batches: list[Batch], lr: float, step: int) -> StepResult:
        """One optimizer step over `batches` (gradient accumulation), loss normalised by the
        trained tokens of all of them (DPO/KTO: by their items). `step` (1-based) seeds dropout, so resume is exact."""

    def eval_loss(self, batch: Batch) -> tuple[float, int]:
        """(summed loss, trained tokens) of one batch, no gradients, no dropout."""

    def sequence_logprobs(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per row: (sum of log p(target) over the loss-mask positions, count of those
        positions), float64 / int64 arrays of shape (B,); no dropout, no gradients. For
        `choice` scoring and preference objectives (DPO/KTO)."""

    def preference_logprobs(self, batch: Batch) -> np.ndarray:
        """Per row, sum of log p over the answer, by the very computation the DPO/KTO loss uses
        (so the reference equals the policy to the bit before the first update); no dropout,
        no gradients. The reference pass."""

    def preference_loss(self, batch: Batch) -> tuple[float, int, dict]:
        """DPO/KTO on a PreferenceBatch with its reference filled: (summed loss, items, metric
        sums), no gradients, no dropout (validation)."""

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop: set[int]) -> list[list[int]]:
        """Greedy (deterministic) continuation of each prompt: the generated ids, ending before
        the first id in `stop` (which is excluded)."""

    def save_adapter(self, directory: Path) -> None:
        """The backend's whole adapter folder: adapters.safetensors + adapter_config.json in
        mlx-lm's format, plus anything else it publishes (torch: peft/)."""

    def load_adapter(self, directory: Path) -> None:
        """Load adapter weights in mlx-lm's format (written by either backend)."""

    def save_state(self, directory: Path) -> None:
        """Optimizer state (everything the next step needs besides the adapter)."""

    def load_state(self, directory: Path) -> None:
        """Restore adapter weights and optimizer state written by save_adapter/save_state."""

    def gather(self, value: int) -> list[int]:
        """Every rank's `value`, in rank order (data parallel: a collective, all ranks call it;
        one process: [value])."""

    def memory(self) -> dict:
        """Current memory figures in bytes: active, peak, cache (where known) and rss."""

    def memory_probe(self) -> MemoryProbe | None:
        """The per-phase memory instruments, or None when the backend has none."""


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def choose_backend(requested: str, recipe: Recipe | None = None) -> tuple[str, str]:
    """Resolve `train.backend` to ("mlx"|"torch", why). auto = mlx on Apple Silicon; elsewhere
    torch when installed (MLX's CPU backend is far slower on x86) and able to train `recipe`
    (registry.unsupported: e.g. QLoRA and adamw8bit are mlx only), else mlx with the reason."""
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    launched = {"torchrun": "torch", "mlx.launch": "mlx"}.get(detect_world().launcher or "")
    if launched and requested in ("auto", launched):
        requested = launched  # a launcher's group can only be joined by its own framework
    elif launched:
        raise UserError(f"train.backend {requested} cannot join a group started by "
                        f"{detect_world().launcher}", key="train.backend",
                        hint=f"use --backend {launched} (or auto) with this launcher")
    if requested == "torch":
        if not has_module("torch") or not has_module("peft"):
            raise UserError("the torch backend needs the torch extra",
                            hint="pip install -e '.[torch]' in the clone")
        if recipe is not None:
            check_supported(recipe, "torch")
        return "torch", "requested by the recipe or --backend"
    if requested == "mlx":
        return "mlx", "requested by the recipe or --backend"
    if apple:
        return "mlx", "auto: Apple Silicon"
    gaps = unsupported(recipe, "torch") if recipe is not None else []
    if gaps:
        key, why = gaps[0]
        return "mlx", f"auto: {key}: {why}"
    if has_module("torch") and has_module("peft") and has_module("mlx_eden.backends.torch.backend"):
        return "torch", "auto: not Apple Silicon and torch is installed (faster on x86 CPUs)"
    return "mlx", ("auto: torch is not installed; on x86 CPUs the torch backend is much faster "
                   "(pip install -e '.[torch]' in the clone)")


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
    """A fresh backend of `name` ("mlx" or "torch"), importing its framework only now."""
    module = importlib.import_module(f"mlx_eden.backends.{name}.backend")
    return module.create()
