"""Data parallel, the backend-neutral part: which rows of each global batch a rank trains, and
what a run of several processes refuses or records.

The data order does not depend on the number of ranks: the plan is built with the global
micro-batch (ranks x train.batch_size rows), exactly the plan of one process with that batch,
and rank r trains the r-th contiguous slice of each of its batches. With the gradients and the
trained tokens summed over ranks (backends/*/distributed.py), N ranks x micro-batch b take the
steps of 1 rank x micro-batch N*b.
"""

from __future__ import annotations

import numpy as np

from ..backends.base import World
from ..data.batching import Batch
from ..errors import UserError


def shard(batch: Batch, world: World) -> Batch:
    """Rank `world.rank`'s rows of a global batch: np.array_split's contiguous slices, so
    the sizes differ by at most one and a short last batch leaves a rank an empty share."""
    rows = np.array_split(np.arange(batch.shape[0]), world.size)[world.rank]
    part = slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)
    return Batch(batch.inputs[part], batch.targets[part], batch.mask[part],
                 batch.segments[part], batch.packed)


class ShardedPlan:
    """A training plan seen by one rank: the same batches and order, this rank's rows."""

    def __init__(self, plan, world: World):
        self.plan, self.world = plan, world

    def __len__(self) -> int:
        return len(self.plan)

    def at(self, micro_step: int):
        epoch, batch = self.plan.at(micro_step)
        return epoch, shard(batch, self.world)

    def __getattr__(self, name):  # trained_tokens, padding_fraction, ...: the global plan's
        return getattr(self.plan, name)


def check_world(recipe, world: World) -> None:
    """Refuse, before anything loads, what data parallel does not do."""
    if world.size > 1 and recipe.train.objective != "sft":
        raise UserError(f"data-parallel training supports objective sft, not "
                        f"{recipe.train.objective}", key="train.objective",
                        hint="train DPO/KTO in one process (without torchrun / mlx.launch)")


def check_same_start(backend, step: int, rundir) -> None:
    """Every rank must start from the same step (the same checkpoint): a rank that finds
    another copy of the run directory, or none, would train other weights without a word."""
    steps = backend.gather(step) if backend.world.size > 1 else [step]
    if len(set(steps)) > 1:
        raise UserError(f"the ranks start from different steps ({', '.join(map(str, steps))})",
                        file=str(rundir.checkpoints), hint="every rank needs the same run "
                        "directory: a shared folder, or a copy at the same path on each machine")


def world_info(world: World, backend: str) -> dict:
    """run.json's `distributed` entry."""
    transport = (world.transport or {"torch": "gloo", "mlx": "ring"}.get(backend, backend)
                 if world.size > 1 else None)
    return {"world_size": world.size, "backend": transport, "launcher": world.launcher,
            "hosts": list(world.hosts)}
