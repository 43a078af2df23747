"""Bytes of our loss (backends/mlx/chunked_loss.py) at its fullest moments: what it keeps for
the backward pass and its short-lived buffers in either pass, plain or chunked. Split from
activations.py (the decoder layers' bytes) so that each module prices one part of a step."""

from __future__ import annotations

from .activations import F32, Work
from .shapes import ModelShape


def loss_saved(s: ModelShape, w: Work, chunk: int) -> int:
    """Bytes the loss keeps from the forward pass for the backward pass. Plain: the float32
    exponentials of the logits (B x L x V; the cross-entropy's gradient reuses them, see
    chunked_loss.cross_entropy). Chunked: each chunk's loss and its gradient w.r.t. the hidden
    states are computed together in the forward pass (backends/mlx/chunked_loss.py), so only that
    (tokens x D) gradient, in the compute dtype, is kept."""
    if not chunk:
        return w.tokens * s.vocab * F32
    return w.tokens * s.hidden * w.dt


def loss_forward_transient(s: ModelShape, w: Work, chunk: int) -> int:
    """Extra bytes, on top of what the loss keeps, at its fullest moment in the forward pass.
    Plain: the logits (compute dtype and float32) next to the exponentials. Chunked: one chunk's
    buffers (chunk_rows_entries) plus the normed hidden states the chunks read.
    Plain bf16: the head's bf16 logits beside the float32 logits and exponentials, in every
    run since chunked_loss.ce_sum holds them until the exponentials exist. Before, thread
    timing freed them first in some runs (one shape's forward 23.6 MB once, 28.9 MB twice: one
    bf16 T x V; heldout8-10's +20.9% and heldout9-04's +24.0% forwards were such leaner runs).
    With the hold (strict): 10 bytes per logit in 60 of 60 loss-only runs
    (benchmarks/loss_hold_ab.py --race), 48 of 48 whole-step forwards of four shapes that
    had raced or run lean (--whole), and the 8 new shapes of in_sample_round10_planner11L
    (bf16 and float32, tied and untied, V 4,096-32,768, checkpointed or not, a 4-bit base)
    within 1.4% on the forward."""
    if not chunk:
        return w.tokens * s.vocab * (F32 + (w.dt if w.dt != F32 else 0))
    return chunk_rows_entries(w, chunk) * s.vocab + w.tokens * s.hidden * w.dt


def chunk_rows_entries(w: Work, chunk: int) -> int:
    """(rows x bytes) per vocabulary entry alive while a loss chunk runs (chunked_loss.py: its
    loss and its hidden-state gradient are formed together). Measured in MLX 0.32 strict mode,
    standalone (value_and_grad of the compiled chunked loss, V 4k-152k, 64-256-row chunks, 1-8
    chunks) and in whole runs (benchmarks/planner_heldout.py, "mech-chunk-*", "mech-h/i-*"):
    - two float32 buffers, the exponentials and the logits' gradient (softmax minus the
      scattered one-hot, one donated into the other), and the head's output when it is its
      own buffer (bfloat16; in float32 the exponentials take the head's output, donated:
      chunked_loss.cross_entropy picks the targets first so nothing else holds it);
    - two more float32 buffers of the next chunk when it is a full one, allocated before this
      chunk's are released (1 to 8 full chunks measured: the count does not grow). A shorter
      last chunk is not started early: 1 x 160-224 tokens in 128-row chunks (V 8,192) measured
      the one-chunk figure (the count with them: 8 bytes x 128 x V over, +42-61% on the
      forward), while 1 x 256 and 1 x 320 had the next chunk's buffers (64-row chunks,
      V 32,768: the same).
    float32: 8 bytes with one chunk, 16 with a full next one, the same in every run since the
    pick-first barrier (48 of 48 standalone; before it, 12 and 20 when the head's output was
    still held by the pick's task, thread timing: mech-chunk-f32-big measured 99.6 MiB once,
    115.5 MiB twice, and the plan counted the larger). bfloat16 still races one buffer: 10 and
    18, or 12 and 20 when the head's bf16 output
    is still held as the logits' gradient is cast back to bf16: the same shapes went both ways
    in different runs (a 1-layer Qwen3 with an untied head, V 8,192: 11 of 11 runs of
    tests/test_planner_phases.py with it, mech-i-qwen3-untied-1l without; its 2-layer and tied
    versions the other way round; heldout2-01's -8.0% was such a run), and MLX_BFS_MAX_WIDTH=1
    (another evaluation order) put Qwen2 and Qwen3 alike 4 bytes over: the order decides, not
    the architecture. Here the plan counts the common run (13 of 20 in-sample and held-out bf16
    chunked runs; counting the other put round 2 at a worst 9.4% instead of 8.0%): the verdict's
    headroom (a float32 rows x V buffer, planner.headroom) covers the extra bf16 one."""
    rows = min(chunk, w.tokens)
    own = (w.dt if w.dt != F32 else 0) + 2 * F32
    ahead = 2 * F32 if w.tokens >= 2 * chunk else 0
    return rows * (own + ahead)


def loss_backward_transient(s: ModelShape, w: Work, chunk: int) -> int:
    """Extra bytes while the loss's gradient is applied in the backward pass. Plain: the float32
    gradient of the logits (and its cast to the compute dtype, or a float32 T x D product).
    Chunked: the kept gradient scaled by the loss's cotangent (T x D)."""
    if not chunk:
        extra = w.tokens * s.vocab * w.dt if w.dt != F32 else w.tokens * s.hidden * F32
        return w.tokens * s.vocab * F32 + extra
    return w.tokens * s.hidden * w.dt


def loss_peak(s: ModelShape, w: Work, chunk: int) -> int:
    """The loss's bytes at its fullest moment (forward or backward), what it keeps included."""
    return loss_saved(s, w, chunk) + max(loss_forward_transient(s, w, chunk),
                                         loss_backward_transient(s, w, chunk))
