"""`eden-mlx train` in two parts. `prepare_run`: model, tokenizer, splits, plans, the locked run
directory and what a resume restores. `execute_run`: the loop, with run.json and metrics.jsonl
kept up to date however it ends (a full disk included)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import World, choose_backend, detect_world, load_backend
from ..data.batching import BatchPlan
from ..data.preference import PreferencePlan, load_preference
from ..data.splits import load_splits
from ..errors import DamagedFile, UserError
from ..hub import resolve_model
from ..recipe import Recipe
from ..registry import check_supported
from ..safeio import disk_full, open_append
from ..tokens import recipe_tokenizer
from .events import Event, Listener, StartEvent, StopEvent, WarningEvent
from .loop import TrainerState, TrainingLoop
from .phases import Phases
from .profiler import MemoryProfiler
from .reference import reference_pass
from .rundir import RunDir, run_info, sha256
from .runplan import RunPlan
from .samples import Sampler, make_sampler
from .world import ShardedPlan, check_same_start, check_world, world_info

# Sections whose change makes a checkpoint unusable (tensor shapes, base weights).
# The optimizer too: its state on disk has another layout (torch would train on the wrong state).
STRUCTURAL = ("model.path", "model.quantize", "adapter.type", "adapter.rank", "adapter.targets",
              "adapter.layers", "train.optimizer")


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


def check_resumable(rundir: RunDir, recipe: Recipe, old_info: dict | None = None) -> list[str]:
    """Refuse to resume a run with a recipe whose adapter or base differs; return the other,
    harmless changes (the resumed run is then no longer an exact continuation)."""
    old = old_info.get("recipe") if old_info is not None else None
    if not isinstance(old, dict):
        old = rundir.read_recipe_dict()
    changed = recipe_changes(old, recipe.to_dict())
    fatal = [k for k in changed if k.startswith(STRUCTURAL)]
    if fatal:
        raise UserError(f"the recipe differs from the run being resumed in {', '.join(fatal)}",
                        file=str(rundir.run_json), hint="resume with the run's own recipe, or "
                        "start a new run with --output NEW_DIR")
    return [k for k in changed if k != "output.dir"]


class MetricsLog:
    """Listener: one JSON object per event in metrics.jsonl, flushed as it happens."""

    def __init__(self, path: Path):
        self.file = open_append(path)

    def __call__(self, event: Event) -> None:
        self.file.write(json.dumps(event.to_dict(), default=float) + "\n")

    def close(self) -> None:
        self.file.close()


def make_plans(recipe: Recipe, splits, pad_id: int, world: World | None = None):
    """Train and validation plans. Data parallel: built with the global micro-batch (ranks x
    train.batch_size), each rank trains its slice of every training batch (run/world.py) and
    evaluates the whole validation split, so every rank takes the same early-stopping call."""
    d, t = recipe.data, recipe.train
    if t.objective != "sft":
        return (PreferencePlan(splits.train, t.batch_size, pad_id, t.objective, t.seed),
                PreferencePlan(splits.valid, t.batch_size, pad_id, t.objective, t.seed)
                if splits.valid else None)
    world = world or World()
    size = t.batch_size * world.size
    train = BatchPlan(splits.train, size, d.max_seq_length, pad_id, d.packing, t.seed)
    valid = (BatchPlan(splits.valid, size, d.max_seq_length, pad_id, d.packing, t.seed)
             if splits.valid else None)
    return (ShardedPlan(train, world) if world.size > 1 else train), valid


def preference_plans(train, valid) -> dict:
    return {"train": train, **({"valid": valid} if valid is not None else {})}


@dataclass
class PreparedRun:
    """Everything `execute_run` needs: built by `prepare_run`, nothing trained yet."""

    recipe: Recipe
    rundir: RunDir
    backend_name: str
    why: str
    impl: object
    info: object
    splits: object
    train_plan: BatchPlan
    valid_plan: BatchPlan | None
    state: TrainerState
    checkpoint: Path | None
    started: float
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sampler: Sampler | None = None  # eval.samples
    phases: Phases = field(default_factory=Phases)


def restore_checkpoint(rundir: RunDir, impl, warnings: list[str]):
    """Load the newest intact checkpoint into `impl`: a damaged one (truncated safetensors, bad
    JSON) is skipped with a warning. Returns (checkpoint, state), or (None, fresh state)."""
    found = rundir.complete_checkpoints()
    for checkpoint in reversed(found):
        try:
            state = TrainerState.read(checkpoint)
            impl.load_state(checkpoint)
            return checkpoint, state
        except DamagedFile as e:
            problem = str(e)
        except UserError:
            raise  # a recipe/structure mismatch: every checkpoint has it
        except Exception as e:  # the libraries' own errors for a cut or corrupt file
            problem = f"{type(e).__name__}: {str(e)[:120]}"
        warnings.append(f"checkpoint {checkpoint.name} is damaged ({problem}); "
                        "using the one before it")
    if found:
        raise UserError("every checkpoint is damaged", file=str(rundir.checkpoints),
                        hint="start a new run with --output NEW_DIR")
    return None, TrainerState()


def data_history(old_info: dict | None, files: list[str], warnings: list[str]) -> list[dict]:
    """On resume, compare the data with run.json's SHA-256s; a change is said, and the earlier
    hashes are kept in run.json's data_history."""
    history = list((old_info or {}).get("data_history") or [])
    old = (old_info or {}).get("data")
    old = old if isinstance(old, dict) else {}
    new = {f: sha256(f) for f in files}
    changed = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
    if old and changed:
        warnings.append("the training data changed since this run started ("
                        + ", ".join(changed) + "): the resumed run trains on the new data; "
                        "run.json keeps the earlier SHA-256s under data_history")
        history.append({"data": old, "until": old_info.get("ended") or old_info.get("started")})
    return history


def prepare_run(recipe: Recipe, *, output: str | None = None, resume: bool = False,
                backend: tuple[str, str] | None = None,
                memory_plan: RunPlan | None = None, phases: Phases | None = None) -> PreparedRun:
    """Load model, tokenizer and data, lock the run directory and restore a checkpoint.
    `phases`: the run's clock (commands/train.py starts it at process start)."""
    started = time.time()
    phases = phases or Phases(started=time.time())  # in-process caller: no start-up to count
    backend_name, why = backend or choose_backend(recipe.train.backend, recipe)
    check_supported(recipe, backend_name)  # before anything is loaded or created
    model_dir = resolve_model(recipe.model.path, recipe.model.revision)
    with phases.time("data"):
        tok = recipe_tokenizer(recipe, model_dir)
        if recipe.train.objective == "sft":
            splits = load_splits(recipe.data, tok, recipe.train.seed)
        else:
            splits = load_preference(recipe.data, tok, recipe.train.seed,
                                     recipe.train.objective)
    check_valid_split(recipe, splits)
    world = detect_world()
    check_world(recipe, world)
    rundir = RunDir(output or recipe.output_dir)
    if world.owner:  # the other ranks only read it (the checkpoint a resume starts from)
        rundir.prepare(resume)
    try:  # the lock is released if anything below fails (an in-process caller may retry)
        return _prepare_locked(recipe, rundir, resume, backend_name, why, model_dir, tok,
                               splits, started, memory_plan, phases)
    except BaseException:
        rundir.unlock()
        raise


def _prepare_locked(recipe, rundir, resume, backend_name, why, model_dir, tok, splits, started,
                    memory_plan, phases) -> PreparedRun:
    old_info = rundir.read_run_json() if resume and rundir.run_json.exists() else None
    warnings: list[str] = []
    changed = check_resumable(rundir, recipe, old_info) if old_info else []
    extra = memory_plan.run_json() if memory_plan is not None else {}
    extra["data_history"] = data_history(old_info, splits.files, warnings) if resume else []
    if splits.mix:  # weighted data.train: the realized count per source
        extra["data_mix"] = splits.mix

    with phases.time("model_load"):
        impl = load_backend(backend_name)
        info = impl.setup(recipe, model_dir)
    probe = impl.memory_probe()  # None: the backend has no per-phase memory instruments
    if probe is not None and memory_plan is not None:
        probe.set_budget(memory_plan.budget_bytes)
    extra["distributed"] = world_info(impl.world, backend_name)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with phases.time("data"):
        train_plan, valid_plan = make_plans(recipe, splits, pad_id, impl.world)
    if resume and recipe.train.objective != "sft" and rundir.complete_checkpoints():
        # The reference is the model before any update: read (or, if the file is gone,
        # compute) it before the checkpoint's weights replace the starting ones.
        reference_pass(impl, preference_plans(train_plan, valid_plan), recipe, rundir.root,
                       lambda event: None)
    checkpoint, state = (restore_checkpoint(rundir, impl, warnings) if resume
                         else (None, TrainerState()))
    check_same_start(impl, state.step, rundir)
    if resume and impl.world.owner:
        rundir.truncate_logs(state.step)
    if changed:
        warnings.append("resumed with recipe changes: " + ", ".join(changed))
    if resume and checkpoint is None:
        warnings.append("--resume: no checkpoint found, starting fresh")
    if info.extra.get("dtype_note"):  # e.g. bf16 on a CPU without fast bf16 kernels
        warnings.append(info.extra["dtype_note"])
    if recipe.train.objective != "sft" and recipe.data.packing:
        warnings.append(f"data.packing does nothing for {recipe.train.objective}: one answer "
                        "per row (a pair's rows share a width)")
    tr = splits.stats["train"]
    if tr.truncated or tr.dropped:
        warnings.append(f"{tr.truncated} training samples truncated and {tr.dropped} dropped at "
                        f"data.max_seq_length={recipe.data.max_seq_length}")
    return PreparedRun(recipe, rundir, backend_name, why, impl, info, splits, train_plan,
                       valid_plan, state, checkpoint, started, extra, warnings,
                       make_sampler(recipe, tok, impl), phases)


def check_valid_split(recipe, splits) -> None:
    """A validation split asked for whose every sample was dropped would turn evaluation off
    without a word."""
    stats = splits.stats.get("valid")
    if not splits.valid and stats is not None and stats.dropped:
        raise UserError(f"every validation sample ({stats.dropped}) was dropped at "
                        f"data.max_seq_length={recipe.data.max_seq_length}",
                        key="data.max_seq_length", hint="raise it, or set data.truncation: "
                        "truncate")


def _info(p: PreparedRun, status: str, ended: float | None = None, **more) -> dict:
    return run_info(p.recipe, p.splits.files, p.backend_name, p.why, p.info, status, p.started,
                    ended, resumed_from=str(p.checkpoint) if p.checkpoint else None,
                    **p.extra, **more)


def _write_final(p: PreparedRun, status: str, error: str | None) -> None:
    """The last run.json write; on a full disk, free the run's temporary folders and retry."""
    more = {"error": error} if error else {}
    more["phases"] = p.phases.to_dict()
    for attempt in (1, 2):
        try:
            p.rundir.write_run_json(_info(p, status, time.time(), **more))
            return
        except OSError as e:
            if attempt == 2 or e.errno != errno.ENOSPC:
                raise
            for tmp in p.rundir.root.glob(".tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)


def execute_run(p: PreparedRun, listeners: list[Listener] = ()) -> StopEvent:
    """Run the loop of a prepared run; run.json always ends with the run's status."""
    log = None
    profiler = None
    status, error = "error", None
    owner = p.impl.world.owner  # data parallel: rank 0 alone logs, shows and writes
    try:
        log = MetricsLog(p.rundir.metrics) if owner else None
        sinks = [log, *listeners] if owner else []

        def emit(event: Event) -> None:
            for sink in sinks:
                sink(event)

        probe = p.impl.memory_probe() if owner else None
        if probe is not None:  # memory.jsonl + MemoryEvents, per phase of a step
            profiler = MemoryProfiler(probe, p.rundir.memory, emit).attach(record_weights=False)
            sinks.append(profiler)  # last: a MemoryEvent it emits follows the event behind it
        if owner:
            p.rundir.write_run_json(_info(p, "running"))
        loop = TrainingLoop(p.recipe, p.impl, p.train_plan, p.valid_plan, p.rundir, emit,
                            p.sampler if owner else None,  # samples: shown by rank 0 only
                            p.phases)
        emit(start_event(p, loop.total))
        if p.recipe.train.objective != "sft":  # shows its progress; a resume reads the file
            reference_pass(p.impl, preference_plans(p.train_plan, p.valid_plan), p.recipe,
                           p.rundir.root, emit, p.state.step)
        for message in p.warnings:
            emit(WarningEvent(step=p.state.step, message=message))
        stop = loop.run(p.state)
        status = stop.status
        return stop
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as e:
        if not isinstance(e, OSError) and disk_full(p.rundir.root):
            e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(p.rundir.root))
            error = f"{type(e).__name__}: {e}"
            raise e from None  # the one-line "disk is full" of the CLI (cli.fault_line)
        error = f"{type(e).__name__}: {e}"[:300]
        raise
    finally:
        for closer in (profiler, log):
            if closer is not None:
                try:
                    closer.close()
                except OSError:
                    pass  # a full disk; run.json below still says how the run ended
        try:
            if owner:
                _write_final(p, status, error)
        finally:
            p.rundir.unlock()


def start_event(p: PreparedRun, total: int) -> StartEvent:
    r, tr = p.recipe, p.splits.stats["train"]
    return StartEvent(
        recipe_name=r.name, model=r.model.path,
        adapter=f"{r.adapter.type} r={r.adapter.rank}", backend=p.backend_name,
        backend_reason=p.why, device=p.info.device, run_dir=str(p.rundir.root),
        total_steps=total, start_step=p.state.step,
        trainable_params=p.info.trainable_params, params_total=p.info.params_total,
        train_samples=len(p.splits.train), valid_samples=len(p.splits.valid),
        truncated=tr.truncated, dropped=tr.dropped,
        predicted_peak_gb=p.extra.get("predicted_peak_gb"), budget_gb=p.extra.get("budget_gb"))


def run_training(recipe: Recipe, *, output: str | None = None, resume: bool = False,
                 listeners: list[Listener] = (), backend: tuple[str, str] | None = None,
                 memory_plan: RunPlan | None = None, phases: Phases | None = None) -> StopEvent:
    """Train per `recipe`; return the final StopEvent (status completed, early_stopped, nan,
    interrupted). `backend` is a resolved (name, why) from choose_backend, else the recipe's;
    `memory_plan` is what the memory plan hands to the run (budget, predicted peak); `phases`
    the run's clock, started by the command (seconds per phase land in run.json)."""
    prepared = prepare_run(recipe, output=output, resume=resume, backend=backend,
                           memory_plan=memory_plan, phases=phases)
    return execute_run(prepared, listeners)
