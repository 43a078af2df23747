"""Samples → padded numpy batches: true length bucketing, or packing several samples per row.

Everything a backend needs arrives as plain numpy, so the MLX and torch backends see
byte-identical input. Batch composition is fixed once (deterministic); each epoch shuffles only
the order of batches, seeded by (seed, epoch), so a resumed run finds its place from a counter.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from .render import Sample

PAD_MULTIPLE = 8
MAX_WIDTHS = 16


@dataclass
class Batch:
    """One micro-batch, shapes (B, L).

    inputs/targets: token ids (targets = inputs shifted left by one within each sample);
    mask: 1.0 where the target is trained; segments: sample number within the row (1, 2, ...)
    and 0 on padding. There are no per-sample positions: both backends run RoPE positions
    0..L-1 along a packed row, which gives the same scores as restarting them (RoPE depends only
    on the distance between query and key, and the mask keeps every pair inside one sample).
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    segments: np.ndarray
    packed: bool
    # The loss is computed only at the trained positions, padded to this many (the most any
    # batch of this width has; None: every position). See `loss_positions`.
    loss_positions: int | None = None

    @property
    def trained_tokens(self) -> int:
        return int(self.mask.sum())

    @property
    def shape(self) -> tuple[int, int]:
        return self.inputs.shape

    @property
    def padding_fraction(self) -> float:
        return float((self.segments == 0).mean())


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def _positions(sample: Sample) -> int:
    """A sample of n tokens occupies n - 1 positions (inputs = ids[:-1], targets = ids[1:])."""
    return len(sample.ids) - 1


def choose_widths(needs: list[int], weights: list[int], limit: int = MAX_WIDTHS) -> list[int]:
    """At most `limit` batch widths, picked from `needs`, that minimise sum(weight x width)
    when each need is served by the smallest chosen width >= it.

    Why: `mx.compile` traces one graph per input shape, and with padding to multiples of 8 a
    dataset with lengths up to 1024 has up to 128 widths (one trace + kernel build each, ~1-2 s
    for a 40-150M model here). The widths are known when the plan is built, so an exact
    dynamic programme over them costs nothing at run time and pads far less than fixed
    power-of-two buckets would. The largest need is always kept."""
    sizes = sorted(set(needs))
    if len(sizes) <= limit:
        return sizes
    index = {w: j for j, w in enumerate(sizes)}
    weight = np.zeros(len(sizes))
    for w, n in zip(needs, weights, strict=True):
        weight[index[w]] += n
    u, cum = np.asarray(sizes, dtype=np.float64), np.cumsum(weight)
    m = len(sizes)
    cost = u * cum  # one group covering sizes[0..j]
    choices = []
    earlier = np.tril(np.ones((m, m), dtype=bool), k=-1)  # p < j
    for _ in range(limit - 1):
        # A new last group (p+1 .. j), served by u[j], after the best cover of sizes[0..p].
        options = np.where(earlier, cost[None, :] + u[:, None] * (cum[:, None] - cum[None, :]),
                           np.inf)
        best = options.argmin(axis=1)
        through = options[np.arange(m), best]
        keep = cost <= through
        choices.append(np.where(keep, -1, best))
        cost = np.where(keep, cost, through)
    widths, j = [sizes[-1]], m - 1
    for back in reversed(choices):  # -1: the best cover of 0..j did not need this group
        if back[j] >= 0:
            j = int(back[j])
            widths.append(sizes[j])
    return sorted(widths)


def _serve(width_set: list[int], need: int) -> int:
    return width_set[bisect.bisect_left(width_set, need)]


def plan_unpacked(samples: list[Sample], batch_size: int) -> tuple[list, list[int]]:
    """One sample per row, rows sorted by true length (so a batch holds similar lengths);
    returns (batches of rows, width of each batch)."""
    order = sorted(range(len(samples)), key=lambda i: (len(samples[i].ids), i))
    batches = [[[i] for i in order[k : k + batch_size]] for k in range(0, len(order), batch_size)]
    needs = [_round_up(max(_positions(samples[r[0]]) for r in b), PAD_MULTIPLE) for b in batches]
    width_set = choose_widths(needs, [len(b) for b in batches])
    return batches, [_serve(width_set, n) for n in needs]


def plan_packed(samples: list[Sample], batch_size: int) -> tuple[list, list[int]]:
    """Several samples per row, each batch as wide as its longest sample's width bucket.

    Why not fill rows to max_seq_length: attention costs (row width)^2 per row whatever the
    segment mask hides (MLX computes the full score matrix on the CPU, and the block-diagonal
    mask rules out fused kernels), so a 40-token sample packed into a 1024-wide row pays
    1024-wide attention. Here the longest remaining sample opens a batch whose width is its
    bucket, and every row of it is filled best-fit with the longest samples that still fit:
    rows end up full (little padding) and short samples ride in the gaps of similar rows."""
    width_set = choose_widths([_round_up(_positions(s), PAD_MULTIPLE) for s in samples],
                              [1] * len(samples))
    pool = sorted((_positions(s), i) for i, s in enumerate(samples))  # ascending
    batches, widths = [], []
    while pool:
        width = _serve(width_set, _round_up(pool[-1][0], PAD_MULTIPLE))
        rows = []
        while pool and len(rows) < batch_size:
            row, space = [], width
            while True:
                j = bisect.bisect_right(pool, (space, len(samples))) - 1
                if j < 0:
                    break
                need, i = pool.pop(j)
                row.append(i)
                space -= need
            rows.append(row)
        batches.append(rows)
        widths.append(width)
    return batches, widths


def collate(samples: list[Sample], rows: list[list[int]], pad_id: int, packed: bool,
            width: int | None = None) -> Batch:
    """Build one padded batch from rows of sample indices (width: at least the longest row,
    rounded up to PAD_MULTIPLE when not given)."""
    fills = [sum(_positions(samples[i]) for i in row) for row in rows]
    width = width or _round_up(max(fills), PAD_MULTIPLE)
    shape = (len(rows), width)
    inputs = np.full(shape, pad_id, dtype=np.int32)
    targets = np.full(shape, pad_id, dtype=np.int32)
    mask = np.zeros(shape, dtype=np.float32)
    segments = np.zeros(shape, dtype=np.int32)
    for b, row in enumerate(rows):
        at = 0
        for seg, i in enumerate(row, 1):
            s = samples[i]
            n = len(s.ids) - 1
            inputs[b, at : at + n] = s.ids[:-1]
            targets[b, at : at + n] = s.ids[1:]
            mask[b, at : at + n] = s.mask[1:]
            segments[b, at : at + n] = seg
            at += n
    return Batch(inputs, targets, mask, segments, packed)


def loss_positions(samples: list[Sample], batches: list, widths: list[int]) -> dict[int, int]:
    """Per batch width, the most trained positions any batch of that width holds, rounded up
    to PAD_MULTIPLE.

    Why: the output head and the cross-entropy cost positions x vocabulary, and only trained
    positions need them; prompts and padding are about half of a chat batch. A backend may
    compute them at the trained positions only, padded to this count (with weight 0): one count
    per width keeps `mx.compile` at one trace per width. Measured on the 40M benchmark model
    (vocabulary 32k, 4 x 464 tokens, one core): head and loss were 1.4 s of a 3.9 s forward."""
    most: dict[int, int] = {}
    for rows, width in zip(batches, widths, strict=True):
        n = sum(samples[i].trained for row in rows for i in row)
        most[width] = max(most.get(width, 0), n)
    return {w: _round_up(max(n, 1), PAD_MULTIPLE) for w, n in most.items()}


class FixedBatches:
    """Per-epoch order of a split's fixed batches, shared by BatchPlan and the preference
    plan: a subclass sets `batches` and `seed` and builds batch `i` in `batch(i)`."""

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.batches))

    def at(self, micro_step: int):
        """The batch of global micro-step k (0-based) and its epoch: resume needs only k."""
        epoch, k = divmod(micro_step, len(self.batches))
        return epoch, self.batch(int(self.epoch_order(epoch)[k]))

    def in_order(self):
        """Every batch once, in fixed order (evaluation)."""
        for i in range(len(self.batches)):
            yield self.batch(i)


class BatchPlan(FixedBatches):
    """The fixed batches of a split and their per-epoch order."""

    def __init__(self, samples: list[Sample], batch_size: int, row_len: int, pad_id: int,
                 packing: bool = False, seed: int = 0):
        if not samples:
            raise ValueError("no samples to batch")
        self.samples, self.pad_id, self.packing, self.seed = samples, pad_id, packing, seed
        # row_len (max_seq_length) bounds every row already: samples were truncated or dropped
        # to it when rendered, and a packed row is never wider than its longest sample's bucket.
        plan = plan_packed if packing else plan_unpacked
        self.batches, self.widths = plan(samples, batch_size)
        self.loss_positions = loss_positions(samples, self.batches, self.widths)

    def __len__(self) -> int:
        return len(self.batches)

    def batch(self, index: int) -> Batch:
        b = collate(self.samples, self.batches[index], self.pad_id, self.packing,
                    self.widths[index])
        b.loss_positions = self.loss_positions[self.widths[index]]
        return b

    @property
    def trained_tokens(self) -> int:
        return sum(s.trained for s in self.samples)

    @property
    def padding_fraction(self) -> float:
        """Share of all batch positions (one epoch) that hold padding."""
        used = sum(_positions(s) for s in self.samples)
        computed = sum(len(b) * w for b, w in zip(self.batches, self.widths, strict=True))
        return 1.0 - used / computed
