"""Experiment trackers (`output.report_to`): listeners of the same events the dashboard folds,
writing TensorBoard event files (RUN_DIR/tensorboard) and Weights & Biases runs (RUN_DIR/wandb).

The writers are the trackers' own clients: tensorboardX writes TensorBoard's event format without
torch or TensorFlow; wandb is W&B's client, offline unless WANDB_MODE says otherwise (the files
sync later with `wandb sync RUN_DIR/wandb/offline-run-*`). The loop does not know they exist.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import UserError
from ..run.events import (
    EvalEvent,
    Event,
    MemoryEvent,
    SamplesEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    SuitesEvent,
)

# tracker -> the module it needs (all in the `tracking` extra)
MODULES = {"tensorboard": "tensorboardX", "wandb": "wandb"}


def scalars(event: Event) -> dict[str, float]:
    """The numbers of one event under tracker tags; the same names in TensorBoard and W&B."""
    if isinstance(event, StepEvent):
        out = {"train/loss": event.loss, "train/lr": event.lr, "train/grad_norm": event.grad_norm,
               "train/tokens_per_sec": event.trained_tokens_per_sec,
               "train/step_time": event.step_time, "train/epoch": event.epoch,
               "memory/peak_gb": event.peak_memory_gb}
        out.update({f"train/{k}": v for k, v in event.metrics.items()})
    elif isinstance(event, EvalEvent):
        out = {"val/loss": event.val_loss, "val/ppl": event.val_ppl}
        out.update({f"val/{k}": v for k, v in event.metrics.items()})
    elif isinstance(event, MemoryEvent):
        out = {f"memory/{event.phase}/{k}": getattr(event, k)
               for k in ("active_gb", "peak_gb", "cache_gb", "rss_gb")}
    elif isinstance(event, SuitesEvent):
        out = {"eval/passed": float(event.passed)}
        out.update(_flatten(event.suites, "eval"))
    else:
        return {}
    # a metric may be None or a list (a preference batch without pairs); trackers take floats
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}


def _flatten(tree: dict, prefix: str) -> dict[str, float]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}/{k}"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}/{k}"] = v
    return out


SAMPLE_COLUMNS = ["style", "prompt", "answer", "tokens"]


def sample_rows(event: SamplesEvent) -> list[list]:
    return [[s[c] for c in SAMPLE_COLUMNS] for s in event.samples]


def samples_markdown(event: SamplesEvent) -> str:
    """eval.samples as a Markdown table (TensorBoard's text plugin renders Markdown)."""
    def cell(value) -> str:
        return " ".join(str(value).split()).replace("|", "\\|") or " "

    lines = ["| " + " | ".join(SAMPLE_COLUMNS) + " |", "|" + "---|" * len(SAMPLE_COLUMNS)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in sample_rows(event)]
    return "\n".join(lines)


def _step(event: Event, last: int) -> int:
    """The event's step; the last step seen for one without (the after-training verdict)."""
    step = getattr(event, "step", None)
    return last if step is None else int(step)


class TensorBoardListener:
    """Event files under RUN_DIR/tensorboard, opened at the run's start (the run dir is known
    then), closed when `trackers` ends."""

    def __init__(self):
        self.writer, self.step = None, 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, StartEvent):
            from tensorboardX import SummaryWriter

            self.close()
            self.writer = SummaryWriter(logdir=str(Path(event.run_dir) / "tensorboard"))
            self.writer.add_text("run", f"{event.recipe_name}: {event.model} + {event.adapter} "
                                 f"on {event.backend}", event.start_step)
            return
        if self.writer is None:
            return
        self.step = _step(event, self.step)
        for tag, value in scalars(event).items():
            self.writer.add_scalar(tag, value, self.step)
        if isinstance(event, SamplesEvent):
            self.writer.add_text("samples", samples_markdown(event), self.step)
        if isinstance(event, StopEvent):
            self.writer.flush()  # stays open for eval.after_train's verdict

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbListener:
    """A W&B run in RUN_DIR/wandb; offline unless WANDB_MODE is set (no account, no network).
    Every row carries `step` as its x axis, so a memory row logged after the next train row
    never trips W&B's "steps only go up" rule."""

    def __init__(self):
        self.run, self.step = None, 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, StartEvent):
            import wandb

            self.close()
            os.environ.setdefault("WANDB_SILENT", "true")  # its banner would tear the dashboard
            self.run = wandb.init(
                dir=str(event.run_dir), project="mlx-eden", name=event.recipe_name,
                mode=os.environ.get("WANDB_MODE", "offline"),
                # console capture would wrap stdout under the dashboard's Live display
                settings=wandb.Settings(console="off"),
                config={k: v for k, v in event.to_dict().items() if k != "event"})
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")
            return
        if self.run is None:
            return
        self.step = _step(event, self.step)
        values = scalars(event)
        if isinstance(event, SamplesEvent):  # a table per evaluation, under the key "samples"
            import wandb

            values = {"samples": wandb.Table(columns=SAMPLE_COLUMNS, data=sample_rows(event))}
        if values:
            self.run.log({"step": self.step, **values})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


LISTENERS = {"tensorboard": TensorBoardListener, "wandb": WandbListener}


def check_trackers(names: list[str], file: str | None = None) -> None:
    """Fail before training when a tracker's package is missing (one line, the extra to add)."""
    for name in names:
        if importlib.util.find_spec(MODULES[name]) is None:
            raise UserError(f"output.report_to names {name} but {MODULES[name]} is not "
                            "installed", file=file, key="output.report_to",
                            hint="pip install 'mlx-eden[tracking]'")


@contextmanager
def trackers(names: list[str], file: str | None = None) -> Iterator[list]:
    """The listeners for `output.report_to`, closed however the run ends (an interrupted run's
    event files and W&B run are complete up to the last step)."""
    check_trackers(names, file)
    with ExitStack() as stack:
        listeners = []
        for name in dict.fromkeys(names):
            listener = LISTENERS[name]()
            stack.callback(listener.close)
            listeners.append(listener)
        yield listeners
