"""Plain, parseable log lines for non-terminals (CI, nohup, pipes) and --no-dashboard.

One `key=value` line per report interval and per eval/save/stop event, e.g.
    step=20/100 epoch=0.42 loss=2.3141 lr=1.00e-04 grad_norm=0.812 tok/s=1532 peak_mem=0.41GiB
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..objectives import describe
from ..run.events import (
    EvalEvent,
    Event,
    ReferenceEvent,
    SamplesEvent,
    SaveEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    WarningEvent,
)
from ..run.phases import describe as describe_phases


class PlainLog:
    def __init__(self, every: int = 10, stream: TextIO | None = None):
        self.every = max(1, every)
        self.stream = stream or sys.stdout
        self._losses: list[float] = []
        self._tokens = 0
        self._time = 0.0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, e: Event) -> None:
        if isinstance(e, StartEvent):
            self._print(f"start recipe={e.recipe_name} model={e.model} adapter={e.adapter!r} "
                        f"backend={e.backend} backend_reason={e.backend_reason!r} device={e.device!r} "
                        f"run_dir={e.run_dir} "
                        f"steps={e.total_steps} from_step={e.start_step} "
                        f"trainable={e.trainable_params} total_params={e.params_total} "
                        f"train_samples={e.train_samples} valid_samples={e.valid_samples}")
        elif isinstance(e, StepEvent):
            self._losses.append(e.loss)
            self._tokens += e.tokens
            self._time += e.step_time
            if e.step % self.every == 0 or e.step == e.total_steps:
                loss = sum(self._losses) / len(self._losses)
                tps = self._tokens / self._time if self._time > 0 else 0.0
                self._print(f"step={e.step}/{e.total_steps} epoch={e.epoch:.2f} loss={loss:.4f} "
                            f"lr={e.lr:.2e} grad_norm={e.grad_norm:.3f} tok/s={tps:.0f} "
                            f"peak_mem={e.peak_memory_gb:.2f}GiB"
                            + (f" {describe(e.metrics)}" if e.metrics else ""))
                self._losses, self._tokens, self._time = [], 0, 0.0
        elif isinstance(e, EvalEvent):
            left = "" if e.patience_left is None else f" patience_left={e.patience_left}"
            self._print(f"eval step={e.step} val_loss={e.val_loss:.4f} val_ppl={e.val_ppl:.2f} "
                        f"best={e.best_val_loss:.4f} improved={str(e.improved).lower()}{left}"
                        + (f" {describe(e.metrics)}" if e.metrics else ""))
        elif isinstance(e, ReferenceEvent):
            if e.done == e.total:
                self._print(f"reference batches={e.total} "
                            + ("reused from the run directory" if e.cached else "computed"))
        elif isinstance(e, SamplesEvent):
            for sample in e.samples:
                self._print(f"sample step={e.step} style={sample['style']!r} "
                            f"prompt={sample['prompt']!r} answer={sample['answer']!r}")
        elif isinstance(e, SaveEvent):
            self._print(f"save step={e.step} {e.what}={e.path}")
        elif isinstance(e, WarningEvent):
            self._print(f"warning step={e.step} {e.message}")
        elif isinstance(e, StopEvent):
            self._print(f"stop step={e.step} status={e.status} reason={e.reason!r}")
            if e.extra.get("phases"):  # where the wall time went (run/phases.py)
                self._print("phases " + describe_phases(e.extra["phases"]))
