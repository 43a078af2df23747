"""The backend-neutral training loop: steps, accumulation, schedule, evaluation, early stopping,
checkpoints, NaN guard. It emits events and knows nothing about how they are shown.

It talks to the backend only through backends/base.py's Backend protocol; the files of an
adapter folder are the backend's business (`save_adapter` writes the whole folder, torch adds
peft/), so the loop stages a checkpoint and adapter/ side by side and publishes them by rename."""

from __future__ import annotations

import dataclasses
import math
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..backends.base import Backend
from ..data.batching import BatchPlan
from ..objectives import add as add_metrics
from ..objectives import finish as finish_metrics
from ..recipe import Recipe
from ..safeio import publish_dir, read_json_object, write_json_atomic
from ..units import to_gib
from .events import EvalEvent, Event, Listener, SaveEvent, StepEvent, StopEvent, WarningEvent
from .phases import Phases
from .rundir import RunDir
from .schedule import learning_rate, warmup_steps


@dataclass
class TrainerState:
    """Everything besides adapter and optimizer that a resumed run needs to continue exactly."""

    step: int = 0
    micro_step: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    last_eval_step: int | None = None
    trained_tokens: int = 0
    elapsed: float = 0.0

    @classmethod
    def read(cls, checkpoint: Path) -> TrainerState:
        data = read_json_object(checkpoint / "trainer_state.json", "trainer_state.json")
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def total_steps(train_cfg, n_batches: int) -> int:
    if train_cfg.max_steps:
        return train_cfg.max_steps
    return max(1, math.ceil(train_cfg.epochs * n_batches / train_cfg.grad_accumulation))


class _StopFlag:
    """First Ctrl-C (or a SIGTERM, e.g. from a job scheduler or `kill`) asks the loop to stop
    after the current step with a checkpoint; a second one interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class TrainingLoop:
    def __init__(self, recipe: Recipe, backend: Backend, train: BatchPlan, valid: BatchPlan | None,
                 rundir: RunDir, emit: Listener, sampler: Callable[[int], Event] | None = None,
                 phases: Phases | None = None):
        self.recipe, self.backend, self.train, self.valid = recipe, backend, train, valid
        self.rundir, self.emit = rundir, emit
        self.sampler = sampler  # eval.samples (run/samples.py): answered after each evaluation
        self.phases = phases or Phases(started=time.time())
        t = recipe.train
        self.total = total_steps(t, len(train))
        self._pending: tuple[Path, Path, Path, int] | None = None
        self.warmup = warmup_steps(self.total, t.warmup_steps, t.warmup_ratio)

    def lr(self, step: int) -> float:
        t = self.recipe.train
        return learning_rate(step, peak=t.learning_rate, total=self.total, warmup=self.warmup,
                             kind=t.schedule, min_ratio=t.min_lr_ratio)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, state: TrainerState) -> EvalEvent | None:
        if self.valid is None:
            return None
        loss_sum, tokens, sums = 0.0, 0, {}
        limit = self.recipe.train.eval_batches
        preference = self.recipe.train.objective != "sft"
        with self.phases.time("eval"):
            for i, batch in enumerate(self.valid.in_order()):
                if 0 <= limit <= i:
                    break
                if preference:  # the validation preference loss, per item (early stopping's)
                    s, n, metrics = self.backend.preference_loss(batch)
                    add_metrics(sums, metrics, float)
                else:
                    s, n = self.backend.eval_loss(batch)
                loss_sum += s
                tokens += n
        val = loss_sum / max(tokens, 1)
        es = self.recipe.train.early_stopping
        improved = state.best_val_loss is None or val < state.best_val_loss - es.min_delta
        if improved:
            state.best_val_loss, state.best_step, state.bad_evals = val, state.step, 0
        else:
            state.bad_evals += 1
        state.last_eval_step = state.step
        left = None if es.patience is None else es.patience - state.bad_evals
        event = EvalEvent(step=state.step, val_loss=val,
                          val_ppl=math.exp(min(val, 50.0)), val_tokens=tokens,
                          best_val_loss=state.best_val_loss, improved=improved,
                          patience_left=left,
                          metrics=finish_metrics(sums, tokens) if preference else {})
        self.emit(event)
        if self.sampler is not None:
            with self.phases.time("samples"):
                answers = self.sampler(state.step)
            self.emit(answers)
        if improved:
            self._save_adapter(self.rundir.best, state.step, "best")
        return event

    # ------------------------------------------------------------------ saving

    def _save_adapter(self, final: Path, step: int, what: str) -> None:
        if not self.backend.world.owner:
            return  # data parallel: rank 0 alone writes the run directory
        with self.phases.time("best_adapter"):
            tmp = self.rundir.tmp_dir(final.name)
            self.backend.save_adapter(tmp)
            publish_dir(tmp, final)
        self.emit(SaveEvent(step=step, path=str(final), what=what))

    def checkpoint(self, state: TrainerState, verified: bool = True) -> None:
        """Write a checkpoint (and refresh adapter/). An unverified one is only staged: the
        weights of step k are known to be good when step k+1's loss comes out finite, so it is
        published then (see `_publish_pending`) and dropped if that loss is NaN."""
        self._drop_pending()
        if not self.backend.world.owner:
            return
        final = self.rundir.checkpoint_path(state.step)
        with self.phases.time("checkpoints"):
            tmp = self.rundir.tmp_dir(final.name)
            self.backend.save_adapter(tmp)
            self.backend.save_state(tmp)
            write_json_atomic(tmp / "trainer_state.json", dataclasses.asdict(state))
            # adapter/ is the backend's own adapter folder of these same weights (torch adds
            # peft/): written now, published with the checkpoint: the loop never copies a layout.
            adapter_tmp = self.rundir.tmp_dir("adapter")
            self.backend.save_adapter(adapter_tmp)
        self._pending = (tmp, adapter_tmp, final, state.step)
        if verified:
            self._publish_pending()

    def _publish_pending(self) -> None:
        if self._pending is None:
            return
        tmp, adapter_tmp, final, step = self._pending
        self._pending = None
        with self.phases.time("checkpoints"):
            publish_dir(tmp, final)
            self.rundir.prune(self.recipe.train.keep_checkpoints)
        self.emit(SaveEvent(step=step, path=str(final), what="checkpoint"))
        with self.phases.time("checkpoints"):
            publish_dir(adapter_tmp, self.rundir.adapter)
        self.emit(SaveEvent(step=step, path=str(self.rundir.adapter), what="adapter"))

    def _drop_pending(self) -> None:
        if self._pending is not None:
            for staged in self._pending[:2]:
                shutil.rmtree(staged, ignore_errors=True)
            self._pending = None

    # ------------------------------------------------------------------ the loop

    def run(self, state: TrainerState) -> StopEvent:
        t = self.recipe.train
        es = t.early_stopping
        started = time.perf_counter() - state.elapsed
        with _StopFlag() as stop:
            while state.step < self.total:
                batches = []
                for _ in range(t.grad_accumulation):
                    _, batch = self.train.at(state.micro_step)
                    batches.append(batch)
                    state.micro_step += 1
                step = state.step + 1
                lr = self.lr(step)
                t0 = time.perf_counter()
                result = self.backend.train_step(batches, lr, step)
                dt = time.perf_counter() - t0
                # The first step of a process traces and compiles: timed apart from the rest.
                self.phases.add("train_steps" if "first_step" in self.phases.seconds
                                else "first_step", dt)
                if not (math.isfinite(result.loss) and math.isfinite(result.grad_norm)):
                    return self._diverged(state, step, f"loss {result.loss}, grad norm "
                                          f"{result.grad_norm}")
                self._publish_pending()  # the previous step's weights gave a finite loss
                state.step = step
                state.trained_tokens += result.tokens
                state.elapsed = time.perf_counter() - started
                mem = self.backend.memory()
                self.emit(StepEvent(
                    step=step, epoch=state.micro_step / len(self.train), loss=result.loss, lr=lr,
                    grad_norm=result.grad_norm, tokens=result.tokens,
                    trained_tokens_per_sec=result.tokens / dt if dt > 0 else 0.0, step_time=dt,
                    peak_memory_gb=to_gib(mem.get("peak", 0)), total_steps=self.total,
                    elapsed=state.elapsed, metrics=result.metrics))
                last = step == self.total
                if t.eval_every and step % t.eval_every == 0 and not last:
                    ev = self.evaluate(state)
                    if ev is not None and not math.isfinite(ev.val_loss):
                        return self._diverged(state, step, f"validation loss {ev.val_loss}")
                    if es.patience is not None and state.bad_evals >= es.patience:
                        self.checkpoint(state)
                        return self._stop(state, "early_stopped",
                                          f"no improvement for {es.patience} evaluations; best "
                                          f"val loss {state.best_val_loss:.4f} at step "
                                          f"{state.best_step}")
                if stop.requested:
                    self.checkpoint(state)
                    return self._stop(state, "interrupted",
                                      f"stopped by Ctrl-C or SIGTERM after step {step}; resume "
                                      "with --resume")
                if t.save_every and step % t.save_every == 0 and not last:
                    self.checkpoint(state, verified=state.last_eval_step == step)
        if self.valid is not None and state.last_eval_step != state.step:
            ev = self.evaluate(state)
            if not math.isfinite(ev.val_loss):
                return self._diverged(state, state.step, f"validation loss {ev.val_loss}")
        self.checkpoint(state)
        return self._stop(state, "completed", f"finished {state.step} steps")

    def _diverged(self, state: TrainerState, step: int, what: str) -> StopEvent:
        """NaN/Inf: keep the last checkpoint whose weights were seen to give a finite loss."""
        self._drop_pending()
        where = self.rundir.latest_checkpoint()
        reason = (f"{what} at step {step}; the last good checkpoint is {where}" if where else
                  f"{what} at step {step} (no good checkpoint yet)")
        self.emit(WarningEvent(step=step, message=reason))
        return self._stop(state, "nan", reason + "; lower train.learning_rate")

    def _stop(self, state: TrainerState, status: str, reason: str) -> StopEvent:
        event = StopEvent(step=state.step, status=status, reason=reason,
                          best_val_loss=state.best_val_loss,
                          extra={"best_step": state.best_step,
                                 "trained_tokens": state.trained_tokens,
                                 "elapsed": state.elapsed,
                                 "phases": self.phases.to_dict()})
        self.emit(event)
        return event
