"""Samples → padded numpy batches: true length bucketing, or packing several samples per row.

Everything a backend needs arrives as plain numpy, so the MLX and torch backends see
byte-identical input. Batch composition is fixed once (deterministic); each epoch shuffles only
the order of batches, seeded by (seed, epoch), so a resumed run finds its place from a counter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Sample

PAD_MULTIPLE = 8


@dataclass
class Batch:
    """One micro-batch, shapes (B, L).

    inputs/targets: token ids (targets = inputs shifted left by one within each sample);
    mask: 1.0 where the target is trained; segments: sample number within the row (1, 2, ...)
    and 0 on padding; positions: position of the token within its own sample.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    segments: np.ndarray
    positions: np.ndarray
    packed: bool

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


def plan_rows(samples: list[Sample], row_len: int, packing: bool) -> list[list[int]]:
    """Group sample indices into rows: one sample per row, or first-fit-decreasing packing.

    A sample of n tokens occupies n - 1 positions (inputs = ids[:-1], targets = ids[1:]).
    """
    order = sorted(range(len(samples)), key=lambda i: (len(samples[i].ids), i))
    if not packing:
        return [[i] for i in order]
    rows: list[list[int]] = []
    free: list[int] = []
    for i in reversed(order):  # longest first
        need = len(samples[i].ids) - 1
        for r, space in enumerate(free):
            if space >= need:
                rows[r].append(i)
                free[r] -= need
                break
        else:
            rows.append([i])
            free.append(row_len - need)
    # Rows of similar fill next to each other, so batches need little padding.
    return sorted(rows, key=lambda row: (sum(len(samples[i].ids) - 1 for i in row), row[0]))


def collate(samples: list[Sample], rows: list[list[int]], pad_id: int, packed: bool) -> Batch:
    """Build one padded batch from rows of sample indices."""
    fills = [sum(len(samples[i].ids) - 1 for i in row) for row in rows]
    width = _round_up(max(fills), PAD_MULTIPLE)
    shape = (len(rows), width)
    inputs = np.full(shape, pad_id, dtype=np.int32)
    targets = np.full(shape, pad_id, dtype=np.int32)
    mask = np.zeros(shape, dtype=np.float32)
    segments = np.zeros(shape, dtype=np.int32)
    positions = np.zeros(shape, dtype=np.int32)
    for b, row in enumerate(rows):
        at = 0
        for seg, i in enumerate(row, 1):
            s = samples[i]
            n = len(s.ids) - 1
            inputs[b, at : at + n] = s.ids[:-1]
            targets[b, at : at + n] = s.ids[1:]
            mask[b, at : at + n] = s.mask[1:]
            segments[b, at : at + n] = seg
            positions[b, at : at + n] = np.arange(n)
            at += n
    return Batch(inputs, targets, mask, segments, positions, packed)


class BatchPlan:
    """The fixed batches of a split and their per-epoch order."""

    def __init__(self, samples: list[Sample], batch_size: int, row_len: int, pad_id: int,
                 packing: bool = False, seed: int = 0):
        if not samples:
            raise ValueError("no samples to batch")
        self.samples, self.pad_id, self.packing, self.seed = samples, pad_id, packing, seed
        rows = plan_rows(samples, row_len, packing)
        self.batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.batches))

    def batch(self, index: int) -> Batch:
        return collate(self.samples, self.batches[index], self.pad_id, self.packing)

    def at(self, micro_step: int) -> tuple[int, Batch]:
        """The batch of global micro-step k (0-based) and its epoch: resume needs only k."""
        epoch, k = divmod(micro_step, len(self.batches))
        return epoch, self.batch(int(self.epoch_order(epoch)[k]))

    def in_order(self):
        """Every batch once, in fixed order (evaluation)."""
        for i in range(len(self.batches)):
            yield self.batch(i)

    @property
    def trained_tokens(self) -> int:
        return sum(s.trained for s in self.samples)
