"""Bytes of activations MLX keeps for the backward pass, per decoder layer, and the MLP's
forward's short-lived buffers (the attention's: memory/attention.py; the loss's: memory/loss.py;
the MLP backward's: memory/mlp_backward.py).

Counted tensor by tensor from mlx-lm's Qwen2/Qwen3 layer with LoRA (mlx_lm.tuner.lora) and our
loss, then checked against MLX's own accounting on this machine (strict mode, see
measure.py) with one configuration changed at a time (dimension, rank, targets, dtype, layers):
the saved bytes agree within 0.1%. Notation: T = batch x sequence tokens, dt = bytes of the
compute dtype, F32 = 4. What MLX keeps, and why:

- LoRA's input x: `(x @ A) @ B` with A float32 promotes x to float32, and the gradient of A needs
  that float32 copy (4 bytes per value whatever the dtype); q/k/v share one copy (mx.compile
  merges identical casts). Also x @ A itself (T x r, float32) for the gradient of B.
- attention under a gradient: MLX runs SDPA unfused (mlx PR #2054, "no sdpa in grad"), so the
  softmax probabilities (B x heads x L x L, dt) are kept, with the scaled queries, keys, values,
  the causal bool mask (L x L; packed rows' additive mask: none) and RoPE's float32 cos/sin
  tables.
- the MLP: mlx-lm's compiled swiglu keeps its two inputs and two of its internals (4 x T x I).
- residual stream: each layer's input and the mid-layer residual (for the RMSNorm gradients).
- the lowest adapted layer keeps only what its own adapters need: nothing below it needs a
  gradient (a layer under the first adapted projection computes no backward at all).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..qwen import ATTENTION_PROJECTIONS, MLP_PROJECTIONS
from .shapes import ModelShape

F32 = 4
ATTENTION = frozenset(ATTENTION_PROJECTIONS)
QKV = frozenset(ATTENTION_PROJECTIONS[:3])


@dataclass(frozen=True)
class Work:
    """The part of a run that decides activation memory."""

    batch: int
    seq: int
    dt: int                 # bytes of the compute dtype (2 bf16/fp16, 4 fp32)
    rank: int
    targets: frozenset      # adapted projections
    packed: bool = False
    dora: bool = False
    quantized: bool = False
    attn_block: int = 0     # train.attention: blockwise → its query block; 0 = fused (full L x L)

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def score_rows(self) -> int:
        """Query rows whose scores over all keys exist at once (blockwise: one block)."""
        return min(self.attn_block, self.seq) if self.attn_block else self.seq


ATTENTION_BLOCK = 128  # backends/mlx/attention.BLOCK (a test keeps them equal)


MLP = frozenset(MLP_PROJECTIONS)


def layer_parts(s: ModelShape, w: Work, bottom: bool = False) -> tuple[int, int]:
    """(attention part, MLP part): bytes one adapted decoder layer keeps from its forward pass
    for its backward pass. `bottom`: the lowest adapted layer, whose input needs no gradient.
    The MLP part is freed by the layer's MLP backward, before its attention backward runs."""
    T, t, dt = w.tokens, w.targets, w.dt
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    # A LoRA input is kept as float32 (the cast for x @ A); under bfloat16 MLX keeps the
    # bfloat16 RMSNorm outputs as well (measured: +4 bytes x T x hidden per layer).
    lora_in = F32
    attn = len(t & ATTENTION) * T * w.rank * F32                 # x @ A per adapter
    mlp = len(t & MLP) * T * w.rank * F32
    if dt != F32:
        attn += T * s.hidden * F32
    scores_grad, values_grad = attention_grads(t, bottom)
    if not bottom:
        attn += T * s.hidden * dt                                # layer input (RMSNorm grad)
    if t & QKV:
        attn += T * s.hidden * lora_in                           # LoRA input of q/k/v
    rest = scores_grad  # RoPE tables and q/k norm inputs kept
    if w.attn_block:
        # blockwise (its own custom VJP): scaled q, k, v, its output and logsumexp. Not
        # calibrated: whole_run's tiny epoch (4 x 512) measured 0.112 GiB against 93.2 MiB
        # planned (-18%; the fused path: -29%).
        rest = not bottom or bool(t & QKV)
        if rest:
            attn += T * (q + 2 * kv) * dt + T * q * dt + w.batch * s.heads * w.seq * F32
    else:
        if scores_grad or values_grad:
            attn += w.batch * s.heads * w.seq * w.seq * dt       # softmax probabilities
        if scores_grad:
            attn += T * _qkv_kept(s, t, bottom) * dt             # scaled q, k, v
            # The causal bool mask, which its `where`'s gradient keeps; a packed row's additive
            # mask is kept by nothing here (attention.mask_bytes; checkpointed, the recomputed
            # layers' argument: attention.checkpointed_mask_kept).
            attn += 0 if w.packed else w.seq * w.seq
    if rest:
        attn += 2 * w.seq * s.head_dim * F32                     # RoPE cos/sin
        if s.qk_norm:                                            # q/k RMSNorm inputs
            attn += T * qk_norm_kept(s, t, bottom) * dt * (1 if dt == F32 else 2)
    if "o_proj" in t:
        attn += T * q * lora_in                                  # LoRA input of o_proj
    if not bottom or t & ATTENTION:
        attn += T * s.hidden * dt                                # mid-layer residual
    if t & {"gate_proj", "up_proj"}:
        mlp += T * s.hidden * lora_in                            # LoRA input of gate/up
    mlp += swiglu_kept(t, bottom) * T * s.intermediate * dt      # swiglu inputs + internals
    if "down_proj" in t:
        mlp += T * s.intermediate * lora_in                      # LoRA input of down_proj
    if w.dora:
        attn += _dora(s, w, t & ATTENTION, bottom)
        mlp += _dora(s, w, t & MLP, bottom)
    return attn, mlp


def attention_grads(targets, bottom: bool) -> tuple[bool, bool]:
    """(scores, values): does the layer's attention backward form the gradient of the scores,
    and of the values? MLX differentiates only along paths to the trainable arrays, so in the
    lowest adapted layer (whose input needs no gradient) the scores' gradient exists only for a
    q_proj or k_proj adapter and the values' only for v_proj; with o_proj alone neither (its
    gradient needs only the attention output). Measured on the in-sample mechanism draws
    (benchmarks/planner_heldout.py, "mech-*-bottom"): pricing the full attention backward put
    o_proj-only 24% over, v_proj-only 10%."""
    if not bottom:
        return True, True
    return bool(targets & {"q_proj", "k_proj"}), "v_proj" in targets


def qk_norm_kept(s: ModelShape, targets, bottom: bool) -> int:
    """Width of the q/k RMSNorm inputs (Qwen3) a layer keeps: both, except in the lowest
    adapted layer without a q_proj adapter, which keeps only k's (k_proj adapted) or none: MLX
    differentiates only along paths to trainable arrays, and no gradient leaves that layer, so
    q's norm is on no trained path (as in _qkv_kept). Measured (strict, fused, bf16, 1 layer,
    k/o/gate/up r=32, 2 x 192, sweep14-09 of in_sample_round13_sweep and its twins): the Qwen3
    forward 0.10 MiB (float base) and 0.16 (4-bit) above its Qwen2 twin's, where q + kv planned
    0.28 and k's side alone 0.09; with v/o/gate/up (no norm on a trained path) Qwen3 and Qwen2
    measured the same backward (6.527 / 6.528 MiB). Stored rows: round 6's mech6-qwen3-h256-
    8x2-1l-bf16-1x768-ckpt-k +12.8% -> +2.9%, sweep14-09's backward +14.7% -> +10.8%. Not with
    q_proj adapted (q's side alone): the q-only rows improved (mech8-*-ckpt-lora-q +10.9% ->
    +7.2%) but rounds 7-8's checkpointed bf16 q+up rows went -2.8/-3.5% -> -5.9/-6.1%."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    if not bottom or "q_proj" in targets:
        return q + kv
    return kv if "k_proj" in targets else 0


def _qkv_kept(s: ModelShape, targets, bottom: bool) -> int:
    """Width of the scaled q, k, v kept for the scores' gradient: dq needs k, dk needs q, and
    both need v (the probabilities' gradient is dout @ v^T). In the lowest adapted layer only
    the adapted side's partner is kept."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    if not bottom:
        return q + 2 * kv
    return kv + (kv if "q_proj" in targets else 0) + (q if "k_proj" in targets else 0)


def swiglu_kept(targets, bottom: bool) -> int:
    """How many T x I buffers of the swiglu a layer keeps: its two inputs and two internals,
    unless it is the lowest adapted layer, where only the adapters' own gradients are needed:
    up_proj's needs silu(gate) alone, down_proj's only its input (counted apart); gate_proj's,
    or any attention adapter's, the full swiglu (measured on the planner's in-sample draws: a
    bottom layer adapting up_proj alone was predicted 55% over with 4)."""
    if not bottom or "gate_proj" in targets or targets & ATTENTION:
        return 4  # (attention adapters below the MLP need the gradient through all of it)
    return 1 if "up_proj" in targets else 0


def swiglu_forward_extra(s: ModelShape, w: Work, bottom: bool) -> int:
    """The swiglu buffers the forward pass computes but a layer does not keep: all four are
    alive while it runs (fewer when it keeps none, see below); or, if larger, the gate/up
    projections side by side just before it (mlp_forward_peak's `side`), when down_proj's
    float32 LoRA input is not made yet; plus, in a Qwen3 layer adapting up_proj alone, the
    compiled step's one more T x I (bottom_up_compiled)."""
    T, kept = w.tokens, swiglu_kept(w.targets, bottom)
    # In bf16 an adapted up_proj's float32 LoRA output and its bf16 cast beside gate's output
    # are 5 T x I units against the swiglu's 4; in float32 3 (the sum is donated). Measured on
    # in_sample_round8_swiglu (mech9s-*-1l-*-nockpt-up, 1 x 512 and 2 x 256, I 768-3072,
    # strict): the bf16 bottom forward was 0.9 (qwen2) and 1.9 (qwen3) dt x T x I over the
    # plan, float32 0.25 and 1.1: one bf16 unit more than float32 on both architectures. Not
    # the sigmoid's float32 cast (swiglu.py): without it the same peaks (10.57/10.57 MiB,
    # qwen2 I=3072 19.81/19.81). With down_proj adapted its float32 input (in `saved`) does
    # not exist yet here, which covers the extra unit (mech9s-*-updown: unchanged, +0.1%).
    down_in = T * s.intermediate * F32 if "down_proj" in w.targets else 0
    side = T * s.intermediate * (_mlp_side(w) - kept * w.dt) - down_in
    # Keeping nothing (down_proj alone: no gradient crosses the swiglu) gate, x and the output
    # are alive beside down's float32 input (in `saved`), which in float32 is the output
    # itself: 3 units in bf16, 2 in float32, not 4. Measured (mech9s-*-nockpt-down, strict,
    # I 1536 and 3072): 4 put bf16 1.0 and float32 2.0 units over (+18%, +36%); now +1..+3%
    # and -3..-5%. The sigmoid's float32 cast again changed nothing (10.01/10.01 MiB).
    if kept == 0:
        return max((2 if w.dt == F32 else 3) * T * s.intermediate * w.dt, side)
    return max((4 - kept) * T * s.intermediate * w.dt, side) + bottom_up_compiled(s, w, kept)


def bottom_up_compiled(s: ModelShape, w: Work, kept: int) -> int:
    """One compute-dtype T x I buffer more in a lowest (not recomputed) Qwen3 layer's forward
    when it adapts up_proj without gate_proj or down_proj (kept == 1). Measured, not traced
    (in_sample_round10_planner11q, Qwen2/Qwen3 twins of one shape, strict; the first ten
    shapes 3 runs each, the same bytes every run): float32 16.39 MiB against Qwen2's 14.21
    (h160, I 1,280, 1 x 512), 31.3 vs 26.8 at I 2,560; bf16 17.1 vs 15.0 (h256, 2 x 256), 12.0
    vs 10.6 (h192, 1 x 512). Not Qwen3's norms' buffers: uncompiled both measure 13.98 MiB;
    Qwen3 with identity q/k norms 16.71, Qwen2 without its q/k/v biases 16.48 or with q/k
    norms added 16.79: the compiled schedule (likely the LoRA sum, compiled_lora_sum) leaves
    it alive unless the graph is Qwen2's. It races: at load 26 one of two float32 runs was
    without it. Not priced: Qwen2 at 5 x 1 heads in bf16 (9.79 MiB, plan 8.63; its float32
    twin and other Qwen2 shapes without it); DoRA (mech7-qwen3-h192-3x3-1l-i768-bf16-2x96-
    nockpt-dora-up 3.51 MiB in 3 of 3 runs: +0.7% without, +8.7% with it)."""
    if not s.qk_norm or kept != 1 or "down_proj" in w.targets or w.dora:
        return 0
    return w.tokens * s.intermediate * w.dt


def swiglu_between(s: ModelShape, w: Work, layers: int) -> int:
    """Bytes the adapted layers strictly between the lowest and the top one keep less than
    swiglu_kept's full count, not checkpointed: our SwiGLU (backends/mlx/swiglu.py, a custom
    VJP since round 5) holds its two inputs and its output, 3 T x I buffers, not mlx-lm's 4.
    The top and lowest layers stay at the count their backward transients were fitted with.
    Measured, not traced: the round-7 in-sample draws mech7-*-nockpt-* (fp32 and bf16, 1 to 5
    layers, peak at the loss) were up to 4.8 T x I (+14%) over with 4 in every layer, the
    excess growing by about one buffer per layer past the second; 3 in every layer moved the
    2-layer draws of rounds 6-7 4-7 points lower (mech7-*-2l-*-kup to -7.8%)."""
    return max(0, layers - 2) * w.tokens * s.intermediate * w.dt


def swiglu_ends(s: ModelShape, w: Work, layers: int) -> int:
    """Bytes the top and the lowest adapted layer hold less than swiglu_kept's 4 T x I buffers
    once the loss runs (the forward's end and the backward's start), float32, not checkpointed:
    with the fused attention 3, like the layers between (swiglu_between; our SwiGLU keeps its
    two inputs and its output); the lowest layer only when it keeps the full swiglu. Measured,
    not traced (in_sample_round12_planner13L, strict, fused, unchunked or chunk 64): qwen3 and
    qwen2, h128-160, 1-4 layers, I 3-10 x hidden, V 1,024-8,192, 2 x 160 packed or 1 x 320-384,
    k/o/down, k/o, q/v, k/up, 4-bit or not: forward and loss-backward 1.00 T x I over the plan
    with one layer, 1.8-2.2 with 2-4 (2.0 +- 0.1 at I 480, 960 and 1,600: the excess follows I,
    not V), down_proj alone 0.96 (its lowest layer keeps none); with this all within 1%. Round
    1's fused float32 draws had the same excess (in-sample-00, mech-h-f32-*, mech-chunk-*-f32,
    mech-vonly-nockpt: peaks now within 0.7%). The blockwise attention the same, in bfloat16
    too (planner15f): until the first-block fix (backends/mlx/attention._backward(wait_first=
    True), planner14b) each blockwise layer also kept one B x heads x 128 x 128 square to its
    backward, unpriced, so blockwise had been given the lowest end only and no bf16 ends.
    Re-measured on the fix (strict): mech13L-*-v3072-*-kodown-blockwise's forward 66,990,576 ->
    64,369,136 bytes (its 4 squares), +1.4% with both ends (+4.6% with the lowest alone);
    in_sample_round13_planner14b's bf16 rows (3 layers, 2 x 128, q/k/v/up) +2.3..+5.9% without
    bf16 ends, -0.5..-2.3% with them (one unpacked row -4.7%); mech7-*-bf16-*-nockpt-vdown
    +6.4 -> +1.9%. The top layer's backward keeps the count ("backward, top
    layer" uses `saved`), and before the loss the ends still hold it (planner: "forward, top
    layer"). Traced since (planner25c, mlp_backward.upper_gate_alone): the backward starts
    without them too, float32 fused; at the top layer's MLP moment they stand in for its
    input gradient's buffers (2.0 T x I in mech17f's q/k/o/down block). bfloat16 with the
    fused attention and 2 or more layers: see the last paragraph.
    gate_proj (planner17f): the swiglu keeps the same 3 buffers whichever projection is
    adapted, so an adapted gate_proj changes nothing at the loss, fused or blockwise. Until
    round 16 it dropped the ends (fused) or the lowest end (blockwise). Traced by ablation
    (mlx-lm's swiglu swapped back in, strict, same twins): the forward rose by 2.12 T x I
    with q/k/o/gate/down and 2.06 without gate_proj (2 layers), 1.00 in one layer: each end
    is mlx-lm's 4th buffer, which ours never keeps; a lowest layer adapting gate_proj alone
    kept 3 with either (1 layer: 18.57 MiB both; 2 layers: 1.10). Measured
    (in_sample_round16_planner17f, float32 twins of heldout15-00: qwen2 h192, 2 layers, I 896,
    2 x 256, q/k/o/gate/down, strict): the forward was +8.6..+11.8% with gate_proj among the
    targets (q/k/o/gate/down, gate/down, gate, o/gate; adamw, accumulation 1, chunk 0, packed,
    6 KV heads alike: 2.05 T x I, 3.6 MiB) and +0.4% without it (q/k/o/down, q/k/o,
    q/k/o/up/down); blockwise (top end only) q/k/o/gate/down, o/gate, gate and bf16
    q/k/o/gate/down +7.3, +7.4, +6.4, +3.6%. With both ends the 17 fused twins (2 and 4
    layers; one layer with q/gate or q/k/o/gate/down) are within +0.2..+0.9%, the blockwise
    ones +2.3, +1.5, +0.2, +0.4%; stored rows: sweep14-02 +6.7 -> +0.6%, mech13u-*-all-*
    +2.9..+4.8 -> +0.1..+0.3%, in_sample_round11_planner12u (blockwise) +2.2..+3.1 ->
    +0.4..+1.2%. Round 1's gate rows and the calibration set were measured before our SwiGLU:
    re-measured (mech17f-again-*), tiny-b4-s256-fp32 is 72.2 MiB, not 78.7 (-0.6% forward with
    both ends). One adapted layer adapting gate_proj alone, or gate_proj with anything under
    the blockwise attention, had no end until round 21 (a compensation for an earlier moment
    of the layer's forward, 1.0-2.0 T x I above the full count). In float32 that moment is
    the layer's MLP forward, priced apart since (gate_swiglu_forward, planner22b), and the
    end is given: the loss's count is the 3 buffers measured after the forward (strict,
    mech22b-02: resident + 3 T x I + 3 T x hidden). bfloat16 blockwise keeps no end there
    (not measured).
    bfloat16 with one adapted layer (fused, keeping the full swiglu, not a lone gate_proj): one
    compute-dtype T x I, as float32's lowest end. Measured, not traced: sweep14-09 and its 14
    fused bf16 mech15w-* twins (in_sample_round13_planner15w: I 320-960, k/q/v/o/gate/up mixes,
    Qwen2 and Qwen3, 4-bit or not) forward +1.0..+3.4% -> +0.1..+0.8%; stored one-layer rows of
    round 1 (mech-h-bf16-*, mech-i-*, mech-chunk-bf16-*) +0.1..+1.2% -> -0.0..+0.2%, sweep13-12
    +2.0% -> +0.4%, mech-b-q-bottom-nockpt's forward +12.9% -> +8.5%. Unlike float32, into that
    layer's own backward too (planner's ends16): sweep14-09's backward +10.8% -> +5.9%, the
    twins' +1.7..+15.4% -> -1.9..+8.0%, round 1's one-layer rows -1.9..+6.7% -> -4.8..+3.7%,
    sweep13-12's -3.7% -> -8.9%. Blockwise follows the rule above instead (planner15f's
    measurements on the first-block fix) at the loss; into the layer's own backward it drops
    the end too without down_proj or DoRA (planner32c: backward_ends16).
    bfloat16, fused, 2 or more layers (planner20c): both ends, as float32, at the loss only (the
    top layer's backward keeps the full count, as it did). Measured on the current backend
    (in_sample_round19_planner20c, the calibration set's tiny model, strict, 2 processes each,
    forwards equal in both): 2 x 512 chunk 256 forward 50.9-51.0 MiB against 54.3 planned, 3.3
    MiB over = 2.2 bf16 T x I (T 1,024, I 768); 2 x 256 and 1 x 512 1.8 and 2.0 MiB (2.4, 2.7
    T x I), unchunked 2.7, q/k/v/o only 3.3, qwen3 3.3, 3 layers 3.6; one layer 0.2 (it has its
    end already), float32 0.2 (its ends too). With both ends these 9 twins' forwards are within
    -0.5..+1.5%, the calibration set's bf16 ones -0.5..+0.7% (planner19c's re-run; before
    +1.4..+6.5%; tiny-q4-b1-s512-r16-attn +5.5% -> -0.1%: the -8.7% that kept this out was
    measured on an older backend). The loss's backward moment drops the same 2 units (float32
    does too), which takes tiny-q4-b2-s256's backward +1.2% -> -3.9%. Stored bf16 fused
    2-4-layer forwards move from +2..+12% to mostly within 1%. Not with it:
    mech9s-qwen2-h128-2l-i1280-bf16-2x256-nockpt-qv, re-measured unchanged
    (mech20c-again-*: 16.5 MiB, -6.1% with both ends, +5.6% without): there I is 10 x hidden
    and V 512, and the forward's peak is the top layer's MLP forward ("forward, top layer",
    15.5 MiB planned), not the loss: its V 4,096 and I 384 twins, where the loss decides, are
    +0.4% and -0.0% with both ends (+12.6%, +9.0% without). That moment's 0.8 T x I is open."""
    if not w.attn_block and w.dt != F32 and layers == 1:  # 2+ layers: float32's ends below
        one = swiglu_kept(w.targets, True) == 4 and w.targets & MLP != {"gate_proj"}
        return w.tokens * s.intermediate * w.dt if one else 0
    if layers == 1 and w.dt != F32 and "gate_proj" in w.targets \
            and (w.attn_block or w.targets == {"gate_proj"}):
        return 0  # bf16 blockwise, one adapted layer with gate_proj: see "gate_proj" above
    ends = (layers > 1) + (swiglu_kept(w.targets, True) == 4)
    return ends * w.tokens * s.intermediate * w.dt


def backward_ends16(s: ModelShape, w: Work, layers: int, checkpoint: bool) -> int:
    """Bytes one adapted bfloat16 layer, not checkpointed, holds less in its own backward than it
    keeps (planner: "backward, top layer" and "backward, bottom layer"): swiglu_ends' end, the
    compute-dtype T x I, fused (swiglu_ends' bfloat16 paragraph) and, since planner32c, blockwise
    too when the layer adapts neither down_proj nor DoRA. Measured, not traced (the step is
    compiled): in_sample_round30_planner32c (strict, three fresh processes each, beside two other
    helpers' runs on two cores), blockwise, LoRA, without gate_proj or down_proj, the plan without
    this over the measured backward in float32 T x I, in 3 of 3 processes unless noted: qwen3 h256 4
    x 4 heads, I 1,024, 2 x 384 (mech31c-09's settings) k/up 0.81, v/o/up 0.77-0.83, k/up at 1 x 384
    0.83, k alone 0.49-0.72; qwen2 h192 3 x 1 heads, I 896, 1 x 384 q/up 0.79, k alone 0.33-0.73;
    qwen3 h128 4 x 4 heads, I 2,048, 1 x 256 v/up 0.53, q alone 0.50-0.62 (a 6-step scratch run of
    mech31c-09: 0.81-0.85 in 10 of 12 micro-batches, 0.35-0.38 in 2). With this end off (0.5 float32
    T x I) the plan is 0.03-0.33 over, one draw of k alone at qwen2 0.17 under. Their fused twins
    (k/up, qwen2 q/up), which had it off, 0.36-0.37 over: the same. Not with down_proj adapted: the
    plan of the blockwise k/up/down twin (mech32c-05) was already 0.40 under with it (as we read it,
    down_proj's LoRA gradient reads the swiglu's output, so the end is held into the backward); nor
    DoRA (its k/up twin +4.6%, unchanged); nor gate_proj, whose blockwise layer has no end
    (swiglu_ends). Predicted before measuring with both planner32c terms: q/v/up 2 x 256 (h256)
    +2.6%, qwen2 v/o/up 2 x 256 unchunked -1.6%, h128 k/up accumulation 1 +1.0% (+6.5..+10.7%
    without)."""
    if checkpoint or w.dt == F32 or layers > 1:
        return 0
    if w.attn_block and (w.dora or "down_proj" in w.targets):
        return 0
    return swiglu_ends(s, w, layers)


def _dora(s: ModelShape, w: Work, targets, bottom: bool = False) -> int:
    """mlx-lm's DoRA (tuner/dora.py) rescales each output by m / ||W + BA||: the unscaled output
    is kept for m's gradient, and a quantized base is dequantized per call and kept when the
    input's gradient needs W (dora_input_grad)."""
    total = 0
    for p in targets:
        i, o = s.projection(p)
        kept_w = w.quantized and dora_input_grad(p, w.targets, bottom)
        total += w.tokens * o * w.dt + (o * i * w.dt if kept_w else 0)
    return total


def dora_input_grad(p: str, targets, bottom: bool) -> bool:
    """Does a DoRA projection's input need a gradient (so its backward keeps the dequantized W)?
    Always above the lowest adapted layer; in the lowest, MLX differentiates only along paths
    to trainable arrays (as attention_grads, swiglu_kept): q/k/v's input never (nothing
    trainable below them in the layer), o_proj's only with a q/k/v adapter, gate/up's only with
    an attention adapter, down_proj's with either. Measured (strict, in_sample_round15_
    planner16d): mech16d-qwen3-h256-4x2-4l-i1024-*-q4-bf16-1x64-nockpt-dora-gu's backward was
    12.46 MiB planned against 11.46 measured, the lowest layer's gate/up W (2 x 0.5 MiB) too
    many; without them 11.46. in_sample_round12_sweep's sweep13-04 backward +4.9 -> +1.7%; the
    1-layer mech16d rows (their k/v W) 1 x 64 +5.5 -> +2.4%, 1 x 128 -4.6 -> -6.5%."""
    if not bottom:
        return True
    if p in QKV:
        return False
    if p == "o_proj":
        return bool(targets & QKV)
    if p in ("gate_proj", "up_proj"):
        return bool(targets & ATTENTION)
    return bool(targets & (ATTENTION | {"gate_proj", "up_proj"}))


def layer_saved(s: ModelShape, w: Work, bottom: bool = False) -> int:
    return sum(layer_parts(s, w, bottom))


def gate_swiglu_forward(s: ModelShape, w: Work) -> int:
    """Bytes one adapted layer's MLP forward holds beyond mlp_forward_peak when it adapts
    gate_proj, float32, not checkpointed (planner: "forward, lowest layer MLP"): one T x I and
    one T x hidden. Our SwiGLU's custom VJP keeps gate, up and its output (3 T x I) and,
    compiled, holds one T x I more while it runs. Traced on the MLP alone (mlx-lm's Qwen2 MLP
    with its RMSNorm and residual, LoRA r=8 on gate_proj, compiled value_and_grad, strict, eval
    of the loss; 8 calls at each of h256 I 1,024 T 384, h192 I 1,536 T 512, h160 I 1,280 T 512,
    h256 I 576 T 1,024): 5 T x I + 1 T x hidden above its inputs at the peak in 18 of 32 calls,
    + 2 in 11 (+ 3 in 1; mlp_forward_peak counts the normed input, 1), 6 T x I in 2 (at hidden
    256: a race); 3 T x I + 2 T x hidden kept after it; with silu(gate) * up 4.5 T x I, with
    gate * up 3.5; gate/up 6 and gate/down 5 (mlp_forward_peak: 5 and 4). In the model
    (in_sample_round21_planner22b, one layer, 3 processes each) this moment decides wherever the
    loss is small: with both the 22 twins' peaks are within -0.2..+2.4% but gate alone at
    hidden 256 in the race's high state (the blockwise twin 1 of 3 draws, the fused 3 of 3,
    mech13s' I 576 fused 2 of 3: -7.4, -7.4, -6.3%), o/gate (2 of 3, -5.1%) and the 2-layer twin
    (+5.6%, its backward; not moved); with the T x I alone the gate-alone rows at 2 x 512 were
    one T x hidden under in every draw (-3.2, -5.4%). Stored round-10/12/16 gate rows measured
    again (mech22b-18..22) peak as stored (mech13s' I 1,152 32.0 MiB, stored 32.9). The high
    state is open. Not measured in bfloat16 or with DoRA: 0 there."""
    if w.dt != F32 or w.dora or "gate_proj" not in w.targets:
        return 0
    return w.tokens * (s.intermediate + s.hidden) * F32


# One adapted float32 layer without gate_proj that keeps its full swiglu (an attention adapter
# below the MLP), not checkpointed: its MLP forward holds two float32 T x I more than
# mlp_forward_peak at its fullest moment, with or without an up_proj or down_proj adapter, LoRA
# or DoRA. Measured, not traced buffer by buffer (the step is compiled; a strict per-block
# trace under /tmp put mech30a-02's forward peak 2.5 T x I above what the forward leaves kept,
# where the loss moment adds 0.6 T x I). The stored rows' forward measured less this moment
# (saved - top_mlp + mlp_forward_peak; in T x I, one or three processes as each group was
# measured): LoRA k/v/up 2.06 and 1.92 (mech30a-02, -11), k/up 1.79-2.02 (mech20a-11,
# mech22a-04/-14), v/o/up 1.72; no MLP adapter: k alone 1.75-1.91 (mech20a-05/-14/-15/-18,
# mech22e-06), o alone 1.98-2.00 (mech24b-04, mech25b-03), k/v 2.01; k/up/down 1.75-1.96
# (mech20a-01/-07/-08/-13/-17, mech22a-09/-10/-12), q/up/down 1.79-1.80, k/down, q/down,
# o/down 1.73-1.91; DoRA k/v/up 2.00-2.29 (mech30a-01/-06/-09/-10/-13), v/o/up 2.25, q/up
# 2.00, k/up/down 2.39, k/v/up/down 2.17, q/k/v/o 2.06, v alone and q alone 1.75. One row
# lower, a single process (mech22a-01, k/up/down, 1 x 512): 1.18, +8.0% with this (its twins
# mech22a-02/-09 +2.0%). With gate_proj adapted gate_swiglu_forward prices this moment (one
# T x I and one T x hidden); not measured with two adapted layers, and not where the lowest
# layer keeps less than the full swiglu (swiglu_forward_extra's). bfloat16 LoRA holds two T x I
# of the compute dtype (planner32c; swiglu_forward_held).
SWIGLU_FORWARD_HELD = 2  # T x I buffers of the compute dtype (float32: 4 bytes each)


def swiglu_forward_held(s: ModelShape, w: Work) -> int:
    """Bytes one adapted layer's MLP forward holds beyond mlp_forward_peak without a gate_proj
    adapter, keeping its full swiglu, not checkpointed (planner: "forward, lowest layer MLP",
    gate_swiglu_forward's moment without gate_proj; see SWIGLU_FORWARD_HELD): float32, LoRA or
    DoRA; bfloat16 LoRA in the compute dtype (planner32c). The bfloat16 one-layer twins of
    in_sample_round30_planner32c (three processes each) measured their forward less that moment
    (saved - top_mlp + mlp_forward_peak) in float32 T x I: blockwise k/up 1.27, v/o/up 1.37, k/up
    at 1 x 384 1.18, k alone 1.13, k/up/down 1.79 (qwen3 h256, I 1,024, 2 x 384), q/up 0.77, k
    alone 1.28 (qwen2 h192, I 896, 1 x 384), v/up 1.40, q alone 1.03 (qwen3 h128, I 2,048, 1 x
    256); fused k/up 0.69 and q/up 0.70: about half float32's 1.7-2.4, two compute-dtype T x I
    (1.0 float32 T x I), within -0.23..+0.40 of it but k/up/down (0.79 under, left open) and the
    fused rows (0.3 over). bfloat16 DoRA: 0 (its k/up twin's forward -2.6% without it)."""
    t = w.targets
    if "gate_proj" in t or swiglu_kept(t, True) != 4 or (w.dt != F32 and w.dora):
        return 0
    return SWIGLU_FORWARD_HELD * w.tokens * s.intermediate * w.dt


def mlp_forward_peak(s: ModelShape, w: Work) -> int:
    """Bytes alive at a layer's MLP in the forward pass when the layer keeps nothing
    (checkpointing). MLX orders a graph breadth-first, so gate_proj and up_proj run side by
    side: each one's base output and, adapted, its LoRA output in float32 and that output's
    cast to the compute dtype are alive together (with the normed input, and its float32 cast
    for the LoRA products). Then the swiglu: its two inputs and two internals (the four buffers
    a layer keeps for its backward, see swiglu_kept, are alive together in the forward too), and
    last its output and (bf16, down_proj adapted) that output's float32 cast. Measured on the
    in-sample mechanism draws (checkpointed): mech-c-* (all seven adapters, intermediate 640 and
    1536) bf16 8 and fp32 4 T x I-entry units of 2 and 4 bytes, mech-gate-bottom-ckpt (gate_proj
    alone, fp32) 4 as well: within 0.5 MiB of 5.5-12.5 MiB."""
    T, t = w.tokens, w.targets
    side = _mlp_side(w)
    down = w.dt + (F32 if "down_proj" in t and w.dt != F32 else 0)
    # Our SwiGLU (backends/mlx/swiglu.py, compiled: its element-wise steps fuse) has its two
    # inputs and its output alive, not mlx-lm's four buffers: mech6-qwen2-h320-5x5-1l-i640-f32-
    # 2x384-ckpt-qkvo, the one MLP-bound checkpointed forward of round 6's in-sample draws,
    # went from +5.9% to +0.8% (the measurements above were with mlx-lm's swiglu).
    # At down_proj the swiglu's two inputs are still alive beside its output (and, bf16 with a
    # down_proj adapter, its float32 cast): without them the LoRA twins of round 8's in-sample
    # DoRA draws adapting down_proj alone (benchmarks/planner_heldout.py, in_sample_round8_dora,
    # mech8-*-ckpt-lora-down, bf16, T 192-512) were 12.8-31.2% under in the forward, 2.0-2.1
    # T x I bf16 buffers each; with them within 1.0%. Measured, not traced. A DoRA down_proj
    # forms its float32 W + BA there too (dora_down_norm).
    at_down = T * s.intermediate * (down + 2 * w.dt) + dora_down_norm(s, w)
    x = T * s.hidden * (w.dt + (F32 if w.dt != F32 and t & {"gate_proj", "up_proj"} else 0))
    side += compiled_lora_sum(w) - several_blocks_side(w)
    return max(T * s.intermediate * max(side, 3 * w.dt), at_down, dora_up_norm(s, w)) + x


def several_blocks_side(w: Work) -> int:
    """Bytes per T x I entry fewer alive at the gate/up moment of a checkpointed bf16 forward
    with a LoRA up_proj (no gate_proj, not DoRA) when the blockwise attention runs several
    query blocks (L > its block). Measured, not traced (in_sample_round10_planner11q, mech11q-
    qwen3-h192-3x3-1l-i1536-bf16-*-ckpt-lora-up-blockwise, strict): one block (1 x 128, 2 x
    128) +1.7% and +4.0% forward, several (1 x 192, 1 x 256) +13.5% and +15.1%, 1.2 bf16 T x I
    each; the fused twin at 1 x 192 +2.5% (the one knob of three); round 8's mech8-qwen3-h192-
    3x3-1l-i768-bf16-2x192-ckpt-lora-up +18.3% -> +5.2%. With one fewer all within 1.6-3.5%.
    Not measured in float32 or with gate_proj: not priced there."""
    several = w.attn_block and w.seq > w.attn_block
    lora_up = "up_proj" in w.targets and "gate_proj" not in w.targets and not w.dora
    return w.dt if several and lora_up and w.dt != F32 else 0


def compiled_lora_sum(w: Work) -> int:
    """Bytes per T x I entry the compiled step's gate/up forward holds beyond _mlp_side, float32:
    under mx.compile an adapted projection's `y + scale * z` (mlx_lm LoRALinear) is made beside
    both its inputs, one more T x I output (no donation). Measured, not traced: the forward of
    one micro-step of mech10-qwen3-h256-4x1-3l-i1088-q4-f32-1x384-ckpt-all (strict, eval of the
    loss only) peaked 1.6-1.7 MiB (1.0-1.07 T x I float32) higher compiled than uncompiled
    (9.85-9.94 vs 8.25 MiB; the uncompiled one equals the plan's 8.25), the same with only the
    MLP adapted, none with only q/k/v/o (6.8-7.1 vs 7.0). in_sample_round9_planner10b (mech10-*,
    1 x 384 to 1 x 768, I 1,088-2,048, hidden 256-384, 4-bit or not, blockwise or fused):
    forward -4.4..-12.4% without it, within 10% with it. Round 1's mech-c-f32-* (all seven
    adapters, measured before our SwiGLU and on older MLX) go from ~0% to +7..+8% forward (peak
    unchanged): measured again today, mech-c-f32-full (2 x 256, I 640) held 0.13-0.6 of the
    unit compiled (7.29/7.88 vs 7.13 MiB uncompiled): it races, as donations do. Not priced in
    bfloat16 (the base mech10 shape in bf16: 0.4-1.2 bf16 units, 7.64/8.29 vs 7.31 MiB)."""
    return F32 if w.dt == F32 and w.targets & {"gate_proj", "up_proj"} else 0


def _mlp_side(w: Work) -> int:
    """Bytes per T x I entry while gate_proj and up_proj run side by side (mlp_forward_peak):
    each one's base output and, adapted, its float32 LoRA output and that output's cast."""
    return sum(w.dt + ((F32 + (w.dt if w.dt != F32 else 0)) if p in w.targets else 0)
               for p in ("gate_proj", "up_proj"))


def dora_weights_kept(s: ModelShape, w: Work, bottom: bool | None = None) -> int:
    """Bytes of the dequantized base weights one layer's DoRA adapters keep (see _dora): a
    function of the weights alone, so checkpointing the layer does not drop them (measured on
    the planner's in-sample draws: a checkpointed 4-bit DoRA run was 41% over the plan that
    dropped them). `bottom` given: only those layer_parts counts (dora_input_grad)."""
    return _dequantized(s, w, [p for p in w.targets
                               if bottom is None or dora_input_grad(p, w.targets, bottom)])


def _dequantized(s: ModelShape, w: Work, projections) -> int:
    """Bytes of these projections' dequantized base weights, when a DoRA run has a 4-bit base."""
    if not (w.dora and w.quantized):
        return 0
    return sum(s.projection(p)[0] * s.projection(p)[1] * w.dt for p in projections)


def dora_forward_transient(s: ModelShape, w: Work) -> int:
    """DoRA's forward builds W + BA in float32 for each adapted projection of a layer to take
    its row norms; the layer's norms are computed together (they do not depend on the input)."""
    if not w.dora:
        return 0
    return sum(s.projection(p)[0] * s.projection(p)[1] * F32 for p in w.targets)


def dora_up_norm(s: ModelShape, w: Work) -> int:
    """A DoRA up_proj's row norms in the layer's forward (mlp_forward_peak): its float32 B A
    and W + BA (or W + BA and its square: two I x H float32 buffers) beside the layer's normed
    input, before any T x I buffer of the MLP exists; on the peak when the weight is large
    next to T x I. Measured (strict, in_sample_round10_planner11q, checkpointed bf16 DoRA up,
    blockwise, 1 x 128-192): an ablation with the norm's denominator a constant took
    mech8-qwen3-h256-4x4-1l-i1024-bf16-1x128-ckpt-dora-up's forward from 4.91 MiB (3 runs of
    3) to 4.05, its LoRA twin's 4.03; fitted on it and mech11q-*-h256-*-i1024-*-1x192 (the
    plan's other buffers + 2 W + BA + the input: 4.91 and 5.07 MiB, both within 0.01), then
    predicted before measuring mech11q-*-h320-*-i1280-*-1x128 and -h256-*-i2048-*-1x128: 7.38
    and 8.47 MiB, measured 7.38 and 8.47 (the plan without it: -21% and -18%). A DoRA
    gate_proj's norm would be the same buffers: not measured, not priced."""
    if not (w.dora and "up_proj" in w.targets):
        return 0
    i, o = s.projection("up_proj")
    return 2 * i * o * F32


def dora_down_norm(s: ModelShape, w: Work) -> int:
    """A DoRA down_proj's float32 W + BA (for its row norms) is formed at the down_proj moment
    of the layer's forward (mlp_forward_peak), while the swiglu's buffers are alive. Ablation
    (strict profile of mech8-qwen3-h256-4x4-1l-i1024-bf16-1x128-ckpt-dora-down with the norm
    precomputed outside the step): the forward peak fell by 1.006 MiB, one float32 1,024 x 256
    W + BA. up_proj's norm: dora_up_norm."""
    if not (w.dora and "down_proj" in w.targets):
        return 0
    i, o = s.projection("down_proj")
    return i * o * F32


def dora_first_norms(s: ModelShape, w: Work) -> int:
    """Bytes a DoRA layer's gate/up norms add in the run's first forward (planner: beside the
    saved activations up to the top layer's attention, the weights and the adapters alone;
    checkpointed, beside the layer inputs, less dora_gate_up_weights). mlx-lm's
    DoRALinear.set_linear leaves its magnitude m = ||dequantize(W).astype(float32)|| unevaluated,
    so step 1's first micro-batch computes every m inside the compiled step next to its own
    denominator ||W + BA||. MLX runs the graph in reverse breadth-first order from the loss and
    both chains are a few ops from the output multiply: they run near the top layer's o_proj,
    after its attention part is kept (not before the layer, as dora_norms_before has it), and
    before the optimizer state or any accumulated gradient exists (both lazy until the first
    update). Alive then, per gate/up: its dequantized W (kept for the backward), one float32
    I x H of the denominator chain (B A, then W + BA and its square, donated in turn) and m's
    float32 cast, and one m chain's own dequantized W; with the normed MLP input (compute dtype
    and its float32 cast). A float base (W a resident parameter) holds the two float32 I x H.
    Measured (strict, in_sample_round16_planner17q and round 15's mech16d twins, qwen3 h256,
    4-bit, bf16, k/v/o/gate/up r=8): the peak is step 1's first forward alone (later forwards
    5.8-6.0 MiB against 7.64 at 1 x 128); with every m evaluated at load it falls from 7.08 to
    4.65 MiB at 1 x 64 (gate's m alone evaluated 6.12, up's 5.62, k/v/o's 7.08); with gate's
    and up's denominators precomputed instead, 5.59. Beyond the rest of this count the forward
    held 5.3-5.5 bf16 I x H per gate/up over 1 x 64-192, I 1,024/2,048, 1-4 layers, sgd/adamw,
    accumulation 1-2, with or without k/v/o (priced: 5.5). Float base: the two twins predicted
    before measuring +0.6/+1.0% (-23.1/-10.5% before), mech16d's 4-layer float row -4.8 ->
    +1.0%. Checkpointed (sweep13-18: step 1's forward 2.74 MiB, step 2's 2.16, 2.31 with m
    evaluated at load): in_sample_round12_planner13s's ckpt-dora-vgu forwards -19.8/-12.9/-11.3%
    (float) -> -0.9/-2.4/-3.4%, sweep13-18 -22.4 -> -8.3% (open: 0.23 MiB). 0 without a
    gate/up adapter (the planner keeps its older count there)."""
    gu = w.targets & {"gate_proj", "up_proj"}
    if not (w.dora and gu):
        return 0
    x = w.tokens * s.hidden * (w.dt + (F32 if w.dt != F32 else 0))
    sizes = [s.projection(p)[0] * s.projection(p)[1] for p in gu]
    if not w.quantized:
        return x + sum(n * 2 * F32 for n in sizes)
    return x + sum(n * (w.dt + 2 * F32) for n in sizes) + max(sizes) * w.dt


def dora_gate_up_weights(s: ModelShape, w: Work) -> int:
    """The dequantized gate/up W inside dora_first_norms: a checkpointed layer's inputs
    (planner: ckpt_inputs, dora_weights_kept) count them already."""
    return _dequantized(s, w, w.targets & {"gate_proj", "up_proj"})
