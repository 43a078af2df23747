"""`eden-mlx train`: resolve the model, prepare the data, pick the backend, run the loop, and keep
run.json and metrics.jsonl up to date."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..backends.base import choose_backend, load_backend
from ..data.batching import BatchPlan
from ..data.render import load_tokenizer
from ..data.splits import load_splits
from ..errors import UserError
from ..hub import resolve_model
from ..recipe import Recipe
from ..registry import check_supported
from .events import Event, Listener, StartEvent, StopEvent, WarningEvent
from .loop import TrainerState, TrainingLoop
from .profiler import MemoryProfiler
from .rundir import RunDir, run_info
from .runplan import RunPlan

# Sections whose change makes a checkpoint unusable (tensor shapes, base weights).
STRUCTURAL = ("model.path", "model.quantize", "adapter.type", "adapter.rank", "adapter.targets",
              "adapter.layers")


def recipe_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipe dicts."""
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += recipe_changes(a, b, path + ".")
        elif a != b:
            keys.append(path)
    return keys


def check_resumable(rundir: RunDir, recipe: Recipe) -> list[str]:
    """Refuse to resume a run with a recipe whose adapter or base differs; return the other,
    harmless changes (the resumed run is then no longer an exact continuation)."""
    changed = recipe_changes(rundir.read_run_json()["recipe"], recipe.to_dict())
    fatal = [k for k in changed if k.startswith(STRUCTURAL)]
    if fatal:
        raise UserError(f"the recipe differs from the run being resumed in {', '.join(fatal)}",
                        file=str(rundir.run_json), hint="resume with the run's own recipe, or "
                        "start a new run with --output NEW_DIR")
    return [k for k in changed if k != "output.dir"]


class MetricsLog:
    """Listener: one JSON object per event in metrics.jsonl, flushed as it happens."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, event: Event) -> None:
        self.file.write(json.dumps(event.to_dict(), default=float) + "\n")

    def close(self) -> None:
        self.file.close()


def make_plans(recipe: Recipe, splits, pad_id: int):
    d, t = recipe.data, recipe.train
    train = BatchPlan(splits.train, t.batch_size, d.max_seq_length, pad_id, d.packing, t.seed)
    valid = (BatchPlan(splits.valid, t.batch_size, d.max_seq_length, pad_id, d.packing, t.seed)
             if splits.valid else None)
    return train, valid


def run_training(recipe: Recipe, *, output: str | None = None, resume: bool = False,
                 listeners: list[Listener] = (), backend: tuple[str, str] | None = None,
                 memory_plan: RunPlan | None = None) -> StopEvent:
    """Train per `recipe`; return the final StopEvent (status completed, early_stopped, nan,
    interrupted). `backend` is a resolved (name, why) from choose_backend, else the recipe's;
    `memory_plan` is what the memory plan hands to the run (budget, predicted peak)."""
    started = time.time()
    backend_name, why = backend or choose_backend(recipe.train.backend, recipe)
    check_supported(recipe, backend_name)  # before anything is loaded or created
    model_dir = resolve_model(recipe.model.path, recipe.model.revision)
    tok = load_tokenizer(model_dir)
    splits = load_splits(recipe.data, tok, recipe.train.seed)
    rundir = RunDir(output or recipe.output_dir)
    checkpoint = rundir.latest_checkpoint() if resume else None
    changed = check_resumable(rundir, recipe) if checkpoint is not None else []
    rundir.prepare(resume)

    impl = load_backend(backend_name)
    info = impl.setup(recipe, model_dir)
    probe = impl.memory_probe()  # None: the backend has no per-phase memory instruments
    if probe is not None and memory_plan is not None:
        probe.set_budget(memory_plan.budget_bytes)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    train_plan, valid_plan = make_plans(recipe, splits, pad_id)

    state = TrainerState()
    if checkpoint is not None:
        impl.load_state(checkpoint)
        state = TrainerState.read(checkpoint)
        rundir.truncate_metrics(state.step)

    log = MetricsLog(rundir.metrics)
    sinks = [log, *listeners]

    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    profiler = None
    if probe is not None:  # memory.jsonl + MemoryEvents, per phase of each step
        profiler = MemoryProfiler(probe, rundir.memory, emit).attach(record_weights=False)
        sinks.append(profiler)  # last: a MemoryEvent it emits follows the event that caused it

    extra = memory_plan.run_json() if memory_plan is not None else {}
    status = "running"
    rundir.write_run_json(run_info(recipe, splits.files, backend_name, why, info, status,
                                   started, resumed_from=str(checkpoint) if checkpoint else None,
                                   **extra))
    try:
        loop = TrainingLoop(recipe, impl, train_plan, valid_plan, rundir, emit)
        tr = splits.stats["train"]
        emit(StartEvent(
            recipe_name=recipe.name, model=recipe.model.path,
            adapter=f"{recipe.adapter.type} r={recipe.adapter.rank}", backend=backend_name,
            backend_reason=why, device=info.device, run_dir=str(rundir.root),
            total_steps=loop.total, start_step=state.step,
            trainable_params=info.trainable_params, params_total=info.params_total,
            train_samples=len(splits.train), valid_samples=len(splits.valid),
            truncated=tr.truncated, dropped=tr.dropped,
            predicted_peak_gb=memory_plan.predicted_peak_gb if memory_plan else None,
            budget_gb=memory_plan.budget_gb if memory_plan else None))
        if changed:
            emit(WarningEvent(step=state.step, message="resumed with recipe changes: "
                              + ", ".join(changed)))
        if resume and checkpoint is None:
            emit(WarningEvent(step=0, message="--resume: no checkpoint found, starting fresh"))
        if tr.truncated or tr.dropped:
            emit(WarningEvent(step=0, message=f"{tr.truncated} training samples truncated and "
                              f"{tr.dropped} dropped at data.max_seq_length="
                              f"{recipe.data.max_seq_length}"))
        stop = loop.run(state)
        status = stop.status
        return stop
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException:
        status = "error"
        raise
    finally:
        if profiler is not None:
            profiler.close()
        log.close()
        rundir.write_run_json(run_info(recipe, splits.files, backend_name, why, info, status,
                                       started, time.time(),
                                       resumed_from=str(checkpoint) if checkpoint else None,
                                       **extra))
