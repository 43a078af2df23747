"""Measure a recipe's memory for real: a few training steps on synthetic worst-case batches.

Every row is data.max_seq_length tokens long and every target is trained, which is the case the
planner plans for (real batches are padded only to their longest row, so they need less). Used by
`eden-mlx profile` and benchmarks/memory_profile.py.

`strict` sets MLX's memory limit to one byte, so MLX waits for the work in flight to finish and
free its buffers at every counted task (below): the measured peak is then the memory the
run needs, without the scheduler's run-ahead (which the trainer bounds with the budget, so it
never matters for whether a run fits, only for how full memory looks). Strict runs are slower.
Not after every op (planner28a, MLX 0.32): the CPU encoder counts one task per ten dispatches
(DISPATCHES_PER_TASK in mlx/backend/cpu/encoder.h; an op is its compute plus a task holding its
inputs), so between waits the main thread allocates up to about four ops ahead of the worker
thread, which frees inputs; whether an op can donate an input depends on how far the worker got.
That is the race that makes one process's peak one draw (benchmarks/planner_heldout.py runs
three).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends.base import load_backend
from ..data.batching import Batch
from ..recipe import Recipe
from ..run.profiler import MemoryProfiler


def synthetic_batch(rows: int, length: int, vocab: int, packed: bool, seed: int) -> Batch:
    """Random token ids, every target trained; packed rows hold two samples each."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(rows, length + 1)).astype(np.int32)
    segments = np.ones((rows, length), np.int32)
    if packed:
        segments[:, length // 2:] = 2
    return Batch(ids[:, :-1], ids[:, 1:], np.ones((rows, length), np.float32), segments, packed)


@dataclass
class Measurement:
    """What a profile run saw. Bytes throughout."""

    peak: int
    phases: dict[str, int]          # highest peak of each phase
    weights: int                    # active after loading base + adapters
    resident: int                   # active after the last step (weights + optimizer state)
    params_total: int
    trainable_params: int
    step_seconds: float
    samples: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def run_profile(recipe: Recipe, model_dir: Path, steps: int = 3, *, strict: bool = True,
                budget_bytes: int | None = None, evaluate: bool = True,
                jsonl: Path | None = None) -> Measurement:
    """Set up the backend for `recipe`, run `steps` optimizer steps (and one evaluation batch)
    on synthetic batches, and return the measured memory."""
    backend = load_backend("mlx")
    info = backend.setup(recipe, model_dir)
    probe = backend.memory_probe()
    if strict:
        probe.set_budget(1)
    elif budget_bytes:
        probe.set_budget(budget_bytes)
    vocab = int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])
    t, d = recipe.train, recipe.data
    profiler = MemoryProfiler(probe, jsonl).attach()
    weights = profiler.samples[0].active
    started = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            batches = [synthetic_batch(t.batch_size, d.max_seq_length, vocab, d.packing,
                                       step * 100 + k) for k in range(t.grad_accumulation)]
            backend.train_step(batches, t.learning_rate, step)
            profiler.step = step
        seconds = (time.perf_counter() - started) / max(steps, 1)
        if evaluate:
            backend.eval_loss(synthetic_batch(t.batch_size, d.max_seq_length, vocab, d.packing, 7))
        resident = backend.memory()["active"]
    finally:
        profiler.close()
    return Measurement(peak=profiler.peak(), phases=profiler.phase_peaks(), weights=weights,
                       resident=resident, params_total=info.params_total,
                       trainable_params=info.trainable_params, step_seconds=seconds,
                       samples=profiler.samples)
