"""Data parallel on torch.distributed (gloo, CPU), for processes started by `torchrun`.

Why an explicit all-reduce and not DistributedDataParallel: DDP reduces during every backward,
so with gradient accumulation it needs `no_sync()` around all micro-batches but the last, and it
averages (divides by the world size) where this project normalises by the trained tokens of all
ranks. One all-reduce of the flat adapter gradient after accumulation is the same arithmetic as
one process with the whole global batch, and one collective per optimizer step.
"""

from __future__ import annotations

import datetime
import socket

import torch
import torch.distributed as dist

from ...errors import PeerLost
from ..base import World


def join(world: World, timeout_s: float) -> World:
    """Join torchrun's process group (gloo) and record every rank's host name; a peer that
    never arrives or stops answering fails every collective after `timeout_s` seconds."""
    if world.size <= 1:
        return world
    if not dist.is_initialized():
        try:
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as e:
            raise PeerLost(f"rank {world.rank}: could not join the torchrun group of "
                           f"{world.size} ({str(e).splitlines()[0][:160]})") from None
    hosts = [None] * world.size
    _collective(world, lambda: dist.all_gather_object(hosts, socket.gethostname()))
    return World(world.rank, world.size, world.launcher, tuple(hosts))


def _collective(world: World, fn):
    """Run one collective; a lost or silent peer (gloo's timeout) becomes one line."""
    try:
        return fn()
    except (RuntimeError, OSError) as e:  # gloo raises RuntimeError subclasses (DistBackendError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split("] ", 1)[-1][:100]  # gloo prefixes its source file and line
        raise PeerLost(f"rank {world.rank} of {world.size}: another rank stopped or stopped "
                       f"answering ({first}); the last checkpoint is intact, resume with "
                       "--resume") from None


def all_sum_step(world: World, params: list[torch.Tensor], loss: float,
                 counts: list[int]) -> tuple[float, list[int]]:
    """Sum the adapter gradients (in place), the summed loss and the counts over all ranks.
    One flat gradient buffer: one collective of the adapter's size per optimizer step."""
    if world.size <= 1:
        return loss, counts
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])  # (adapter values,)
    small = torch.tensor([loss, *counts], dtype=torch.float64)  # exact token counts
    _collective(world, lambda: dist.all_reduce(flat))
    _collective(world, lambda: dist.all_reduce(small))
    at = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[at:at + n].view_as(p).to(p.dtype)
        at += n
    return float(small[0]), [int(c) for c in small[1:].tolist()]


def gather(world: World, value: int) -> list[int]:
    """Every rank's `value`, in rank order (a collective: every rank calls it)."""
    if world.size <= 1:
        return [value]
    values = [None] * world.size
    _collective(world, lambda: dist.all_gather_object(values, int(value)))
    return values


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
