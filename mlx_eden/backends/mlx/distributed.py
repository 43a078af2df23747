"""Data parallel on mx.distributed (the ring backend: Ethernet or Thunderbolt IP; loopback here),
for processes started by `mlx.launch`.

The gradient all-reduce is mlx-nn's `average_gradients` (what mlx-lm's trainer calls): it
concatenates the adapter gradients into 32 MiB groups, one all_sum each. It divides by the
world size; the caller multiplies that back in its 1/tokens scale, so the update is the one of a
single process over the whole global batch.

Why a watchdog: the ring backend raises at once when a peer's socket closes (measured here: a
killed peer fails the next all_sum in 3 ms), but a peer that hangs (stopped, swapping, a cable
pulled) leaves the others blocked in a socket read with no timeout. A timer around each
collective ends the process with one line instead.
"""

from __future__ import annotations

import os
import sys
import threading

import mlx.core as mx
import mlx.nn as nn

from ...errors import PeerLost
from ..base import World


def join(world: World) -> World:
    """Join mlx.launch's group (ring, or JACCL over Thunderbolt 5 RDMA); its size must be the
    one the launcher announced."""
    if world.size <= 1:
        return world
    group = mx.distributed.init(strict=True, backend=world.transport or "ring")
    if group.size() != world.size or group.rank() != world.rank:
        raise PeerLost(f"mx.distributed gave rank {group.rank()} of {group.size()}, the "
                       f"launcher announced {world.rank} of {world.size}")
    return world


def _watched(world: World, timeout_s: float, arrays) -> None:
    """Evaluate `arrays` (collectives); exit with one line if a peer fails or never answers."""
    def give_up():
        sys.stderr.write(f"error: rank {world.rank} of {world.size}: no answer from another "
                         f"rank for {timeout_s:g} s; the last checkpoint is intact, resume with "
                         "--resume\n")
        sys.stderr.flush()
        os._exit(1)  # the main thread is blocked in a socket read: only an exit ends it

    timer = threading.Timer(timeout_s, give_up)
    timer.daemon = True
    timer.start()
    try:
        mx.eval(arrays)
    except RuntimeError as e:
        raise PeerLost(f"rank {world.rank} of {world.size}: another rank stopped ({e}); the "
                       "last checkpoint is intact, resume with --resume") from None
    finally:
        timer.cancel()


def all_sum_step(world: World, timeout_s: float, grads, loss: mx.array,
                 tokens: int) -> tuple[object, mx.array, int, float]:
    """Sum gradients, summed loss and trained tokens over all ranks. Returns (gradients,
    loss, tokens, factor): the gradients are the all-rank mean, so scale them by
    factor / tokens (factor = the world size) to get the all-rank sum / tokens."""
    if world.size <= 1:
        return grads, loss, tokens, 1.0
    grads = nn.average_gradients(grads)
    # float32 counts are exact to 2**24 trained tokens per optimizer step
    counters = mx.distributed.all_sum(mx.stack([loss.astype(mx.float32),
                                                mx.array(tokens, mx.float32)]))
    _watched(world, timeout_s, [grads, counters])
    return grads, counters[0], int(counters[1].item()), float(world.size)


def gather(world: World, timeout_s: float, value: int) -> list[int]:
    """Every rank's `value` (exact below 2**24), in rank order: an all_sum of one-hot rows."""
    if world.size <= 1:
        return [value]
    row = mx.zeros((world.size,), mx.float32)
    row[world.rank] = value
    total = mx.distributed.all_sum(row)
    _watched(world, timeout_s, total)
    return [int(v) for v in total.tolist()]
