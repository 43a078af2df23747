"""What the training loop tells the world. Listeners (the JSONL log, the plain console, the
dashboard, the memory profiler) subscribe; the loop never imports any of them. Early stopping is
not a listener: it decides whether the loop goes on, so it is in the loop (run/loop.py).
Memory figures (`*_gb`) are GiB, the project's one unit (mlx_eden/units.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass
class StartEvent(Event):
    """The run begins (or resumes): everything the dashboard header shows."""

    kind: ClassVar[str] = "start"
    recipe_name: str
    model: str
    adapter: str
    backend: str
    backend_reason: str
    device: str
    run_dir: str
    total_steps: int
    start_step: int
    trainable_params: int
    params_total: int
    train_samples: int
    valid_samples: int
    truncated: int = 0
    dropped: int = 0
    predicted_peak_gb: float | None = None
    budget_gb: float | None = None


@dataclass
class StepEvent(Event):
    """One optimizer step. Recorded as {"event": "train", ...} in metrics.jsonl."""

    kind: ClassVar[str] = "train"
    step: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    trained_tokens_per_sec: float
    step_time: float
    peak_memory_gb: float
    total_steps: int
    elapsed: float
    metrics: dict = field(default_factory=dict)  # DPO/KTO: rewards, accuracy, margin, KL


@dataclass
class EvalEvent(Event):
    kind: ClassVar[str] = "eval"
    step: int
    val_loss: float
    val_ppl: float
    val_tokens: int
    best_val_loss: float
    improved: bool
    patience_left: int | None
    metrics: dict = field(default_factory=dict)  # DPO/KTO on the validation split


@dataclass
class SamplesEvent(Event):
    """eval.samples answered greedily right after an evaluation: one {prompt, style, answer,
    tokens} per sample, in the recipe's order (what the model says, not only its loss)."""

    kind: ClassVar[str] = "samples"
    step: int
    samples: list = field(default_factory=list)


@dataclass
class SaveEvent(Event):
    kind: ClassVar[str] = "save"
    step: int
    path: str
    what: str  # "checkpoint", "best", "adapter"


@dataclass
class MemoryEvent(Event):
    kind: ClassVar[str] = "memory"
    step: int
    phase: str
    active_gb: float
    peak_gb: float
    cache_gb: float
    rss_gb: float


@dataclass
class ReferenceEvent(Event):
    """Progress of the DPO/KTO reference pass (the starting model's log-probabilities of every
    train and valid row, computed once, stored in the run directory)."""

    kind: ClassVar[str] = "reference"
    step: int
    done: int  # batches
    total: int
    cached: bool = False  # read from the run directory (resume)


@dataclass
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    step: int
    message: str


@dataclass
class StopEvent(Event):
    kind: ClassVar[str] = "stop"
    step: int
    status: str  # completed, early_stopped, nan, interrupted, error
    reason: str
    best_val_loss: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class SuitesEvent(Event):
    """Evaluation suites judged after training (eval.after_train): the run's verdict."""

    kind: ClassVar[str] = "suites"
    passed: bool
    adapter: str
    suites: dict = field(default_factory=dict)
    gates: list = field(default_factory=list)


Listener = Callable[[Event], None]
