"""Bytes a layer's MLP backward holds beyond what the layer keeps: the float32 gradient
buffers of T x I, what a recomputed (checkpointed) layer still holds of its forward, a lone
gate/up/down adapter in the lowest adapted layer, and DoRA's scaled gradient. Split from
memory/activations.py (what the forward keeps and its MLP buffers), which it builds on.
Every count here was measured, not traced: strict-mode peaks of the in-sample groups of
benchmarks/planner_heldout.py, named in each docstring."""

from __future__ import annotations

from .activations import (
    ATTENTION,
    F32,
    MLP,
    Work,
    attention_grads,
    dora_down_norm,
    layer_saved,
    mlp_forward_peak,
    swiglu_kept,
)
from .shapes import ModelShape


def mlp_backward_transient(s: ModelShape, w: Work, checkpoint: bool = False,
                           bottom: bool = False) -> int:
    """Extra bytes while a layer's MLP backward runs: float32 gradient buffers of T x I (two, or
    three when the layer was just recomputed: one of its forward's T x I buffers is still about;
    measured on the small benchmark model, 4 over-predicted its peak by 5%), and the residual
    stream's gradient. In float32 without checkpointing one buffer fewer: MLX donates a float32
    input's buffer to an op's output of the same dtype (measured on the planner's in-sample
    draws, benchmarks/planner_heldout.py: fp32 MLP-bound configurations were 5-12% over with
    the bf16 count; recomputed layers keep the count; not in a lowest layer adapting gate and up:
    lowest_gate_up_buffers). One buffer too in a lowest layer that
    keeps less than the full swiglu (no gate_proj adapter: only up_proj's gradient is formed);
    more there with up_proj beside down_proj or an attention adapter (lowest_up_buffers), and
    in bfloat16 with gate/up/down adapted (lowest_gate_up_buffers16), and in float32 with
    gate/up/down beside an attention adapter (lowest_gate_up_down_attention). Recomputed, in a
    bfloat16 lowest layer: adapting gate/down without up_proj (lowest_gate_down16), or gate/up
    without down_proj beside an attention adapter (lowest_gate_up_attention16)."""
    T = w.tokens
    # The lowest adapted layer forms no input gradient, recomputed or not: the count without
    # recomputation (mech-*-bottom-ckpt: 3 buffers put the MLP-bound ones 10-25% over).
    if checkpoint:
        # Recomputed through our SwiGLU, one buffer fewer than through mlx-lm's (3 in an upper
        # layer, 2 in a bf16 lowest one keeping the full swiglu, else 1) unless gate_proj and
        # up_proj are both adapted: the MLP-bound checkpointed in-sample draws of rounds 5 and
        # 6 (mech5/mech6-*-ckpt-*, 13 of them, fp32 and bf16, upper and lowest layers) were
        # 0.6-3.6 such buffers over with those; with gate and up adapted (mech6-*-ckpt-all and
        # -mlp, fp32 and bf16) one fewer put them 4-7% under, the count as before 0-5% over.
        if not bottom:
            n = 3 if {"gate_proj", "up_proj"} <= w.targets else 2
            if w.targets & MLP == {"down_proj"}:
                # down_proj alone: fewer (in_sample_round8_mlp, mech8-qwen3-h160-*-i1152-*-
                # ckpt-down, 2-3 layers, T 512: fp32 19-23% over with 2, 2.1-2.2 T x I fp32
                # buffers; bf16 1.1 bf16 buffers over; with this +0.5..+1.9%, and round 1's
                # mech-e-bf16-down +3.7% -> -1.0%). Measured, not traced.
                n = 0 if w.dt == F32 else 1
            elif not w.targets & MLP and w.dt == F32:
                # No MLP adapter, float32: one fewer too (in_sample_round12_planner13k, mech13k-
                # qwen2-h256-4x2-3l-i896-q4-f32-1x512-*-kv-blockwise: 16.94 MiB in 2 of 2 runs,
                # 2 put it 7.9% over, 0.76 T x I float32; that layer alone, strict, 12.43-12.96
                # MiB against 12.54 with 1 and 14.29 with 2; round 9's mech10-*-ckpt-qkvo +9.5%
                # -> -0.8%, round 8's mech8-*-ckpt-qkvo +8.4/+14.1/+15.0% -> +0.3/+5.9/+7.1%;
                # three packed fused rows whose attention path then decides went under: mech8-
                # *-4x1-*-packed-qkvo -1.4 -> -7.7%, mech11m-*-4x4-*-packed-qkvo -1.8 -> -6.7%,
                # mech8-*-4x4-*-packed-qv +2.1 -> -3.6%). Predicted before measuring: mech13k-
                # qwen3-h192-*-qv-fused +0.8% (a repeat the same), -qwen2-h320-*-o-blockwise
                # +2.6% (a repeat -0.5%); with 2: +8.1%, +14.9%. Its MLP block has no parameter
                # gradient, so update.evaluate_gradients' first evaluation of the layer runs the
                # MLP's input gradient on into the attention (as we read it; not traced). bf16:
                # not measured, unchanged.
                n = 1
            elif w.targets & MLP == {"gate_proj"} and w.dt == F32:
                # gate_proj alone, float32: one fewer (in_sample_round10_planner11g, mech11g-
                # qwen3-h160-5x1-3l-i1152-f32-*-ckpt-gate, T 256 and 512, the same in a second
                # run: 2 put the backward 8.5% and 11.1% over, 1.2 T x I float32; bf16 keeps 2:
                # its twin +1.9%, round 1's mech-e-bf16-gate -0.0%). Measured, not traced.
                n = 1
        else:
            n = 1 if w.dt != F32 and swiglu_kept(w.targets, True) == 4 else 0
    elif not bottom:
        # An upper layer, not recomputed, through our SwiGLU (backends/mlx/swiglu.py, since
        # round 5): a float32 buffer per adapted MLP projection (one fewer in bf16). Measured,
        # not traced: the round-6 in-sample draws mech6-*-i1280/i1600-*-nockpt-* (no MLP
        # adapter, down, up, gate+up, all three; fp32 and bf16) were -11% to +28% with the
        # count before; with this one their backward phases are within 7%.
        # Float32 under the fused attention, the lowest layer keeping the full swiglu: a
        # down_proj adapter adds no such buffer (its LoRA gradient needs the kept input and the
        # T x hidden output gradient). Measured, not traced (in_sample_round12_planner13L,
        # strict, 4 layers, V 512-1,024): the top layer's backward 1.14 T x I over with k/o/down
        # (+3.8%), 1.03 with k/up/down, 0.06 with k/o, 0.14 with k/up; now within 1%. Not with
        # a lowest layer keeping less (planner13u's up/down rows -3.7 -> -6.3% without down's,
        # mech13L-*-v512-*-down +1.1 -> -2.9%), nor bf16 (the calibration set's tiny and
        # small "all" rows -6.9/-4.2% -> -12.3/-7.0% without down's). Blockwise too since the
        # first-block fix (planner15f; before it the twin was +0.8% with down's buffer, its
        # layers' first-block squares unpriced): re-measured, mech13L-*-v512-*-kodown-blockwise
        # 59,982,576 -> 55,323,376 bytes (4 squares and one T x I), +9.3% -> +5.6% without it;
        # round 7's mech7-*-5l-*-f32-*-vdown +4.3 -> +1.5%, round 8's mech8-*-3x256-*-qvdown-
        # packed +11.3 -> +6.8% (backward).
        fused32 = w.dt == F32 and swiglu_kept(w.targets, True) == 4
        mlp = w.targets & ({"gate_proj", "up_proj"} if fused32 else MLP)
        if upper_gate_alone(w):  # gate_proj its only MLP adapter: no buffer of its own
            mlp = set()
        n = max(0, len(mlp) - (0 if w.dt == F32 else 1))
        return n * T * s.intermediate * F32 + T * s.hidden * F32
    else:
        alone = lowest_alone(s, w)
        if alone is not None:
            return alone
        beside = lowest_down_beside_attention(s, w)
        if beside is not None:
            return beside
        n = 2 if w.dt != F32 and swiglu_kept(w.targets, bottom) == 4 else 1
        n += lowest_up_buffers(w) + lowest_gate_down_buffers(w) + lowest_gate_up_buffers(w)
        n += lowest_dora_up_buffers(w) + lowest_gate_up_buffers16(w)
        n += lowest_gate_up_down_attention(w)
    size = F32 if w.targets & MLP else w.dt
    # A recomputed bfloat16 layer's buffers stay bfloat16 unless gate_proj and up_proj are both
    # adapted (mech-e/g-*: with one MLP adapter, or down with one of them, float32 buffers put
    # them 9-22% over; with gate and up, bfloat16 ones 8% under). Measured, not traced.
    if checkpoint and w.dt != F32 and not {"gate_proj", "up_proj"} <= w.targets:
        size = w.dt
    total = (n * T * s.intermediate * size + T * s.hidden * F32
             + (dora_mlp_backward(s, w, bottom) + up_down_recomputed(s, w, bottom)
                + lowest_gate_up(s, w, bottom) + only_recomputed_attention(s, w, bottom)
                - only_recomputed_attention16(s, w, bottom)
                + lowest_gate_down_recomputed(s, w, bottom) + lowest_gate_down16(s, w, bottom)
                + lowest_gate_up_attention16(s, w, bottom)
                if checkpoint else 0))
    if checkpoint and bottom:
        return max(total, lowest_recomputed(s, w) - layer_saved(s, w, bottom=True))
    return total


def upper_gate_alone(w: Work) -> bool:
    """Does an upper float32 layer's MLP backward, not recomputed, form no float32 buffer for its
    gate_proj adapter (gate_proj its only MLP adapter)? The gate's LoRA gradients read the swiglu's
    gate gradient, which the layer's input gradient forms anyway (the recomputed branch above has
    the same rule). Traced (strict, one mx.eval per block of update.evaluate_gradients, active
    memory before each and MLX's peak reset; scratch, not committed): the backward starts at the
    loss's count (swiglu_ends' buffers already gone) in all 11 target sets traced (3 shapes),
    0.36-0.77 MiB under the plan's "backward, loss" moment (the loss's own transient); the top
    layer's MLP block then rose 4.03 MiB (1.57 T x I + T x hidden) with gate alone and 4.00 with
    q/gate at qwen3 h256 I 1,152 2 x 256 (T x I 2.25 MiB), and 1.46 and 3.12 in two processes
    (0.62-1.57 T x I + T x hidden) at mech17f's qwen2 h192 I 896 gate row, where the plan priced
    swiglu_ends' two buffers (standing in for the input gradient's: the q/k/o/down block of that
    shape rose 2.0 T x I) and one for gate: 3 T x I + T x hidden. Measured (highest of three
    processes): every stored gate-alone row was 1.0-1.27 T x I over (mech24b-08/-09/-11 +5.2..+7.1%,
    mech17f-*-g/-og/-again-in-sample-08 backwards +7.5..+9.8%, mech13s-*-nockpt-gate +7.6%,
    mech7-*-ogate +7.3%), and in_sample_round23_planner25c's q/gate, gate and o/gate twins (two
    families; unchunked, tied, 2 layers, blockwise, 1 x 512) +6.4..+8.1% -> -2.9..+1.6%. Not with
    up_proj or down_proj beside gate (mixed, not priced: gate/down -0.03 T x I at mech17f, +5.0% at
    mech25c-01; gate/up +2.8%), nor bfloat16 (its count is one buffer fewer already)."""
    return w.dt == F32 and w.targets & MLP == {"gate_proj"}


def lowest_alone(s: ModelShape, w: Work) -> int | None:
    """The MLP backward's extra bytes in the lowest adapted layer, not recomputed, when gate_proj
    or down_proj is the layer's only adapter (no gradient crosses the MLP's input); None
    otherwise. down_proj alone forms no T x I gradient: its LoRA's needs the kept float32 input
    and its output's gradient (T x hidden) cast to float32 beside the residual's. gate_proj
    alone: the swiglu's VJP forms only gate's gradient, cast to float32 in bf16 for the LoRA
    product (in float32 the VJP's output is that input: nothing more), and no T x hidden
    buffer beyond the kept ones. Measured, not traced (in_sample_round10_planner11g and
    round 8's mech9s-*-1l-*-nockpt-gate/down, strict, T 384-512, I 3-8 x hidden, Qwen2 and
    Qwen3): down alone held 2.0-2.6 T x hidden float32 (the count before, one float32 T x I and
    a T x hidden: 30-41% over; now -3.0..+1.8%); gate alone one float32 T x I less one T x hidden
    float32 in bf16 (fitted over T x hidden = 0.25-0.67 bf16 T x I), 0.0-0.01 T x I in float32
    (before, two float32 T x I in bf16 and one in float32 with the T x hidden: 20-34% over; now
    +3.1..+6.8%)."""
    alone = w.targets & (ATTENTION | MLP)
    if alone == {"down_proj"}:
        return 2 * w.tokens * s.hidden * F32
    if alone == {"gate_proj"}:
        return w.tokens * s.intermediate * F32 if w.dt != F32 else 0
    return None


def lowest_down_beside_attention(s: ModelShape, w: Work) -> int | None:
    """The MLP backward's extra bytes in the lowest adapted bfloat16 layer, not recomputed, LoRA,
    when down_proj is its only MLP adapter beside an attention adapter; None otherwise. Traced
    per block (strict, one mx.eval per block of update.evaluate_gradients, 5 steps): the MLP
    block evaluates only down_proj's LoRA gradients (0.3-0.6 float32 T x I above the forward's
    end: the T x hidden output gradient) and frees down's float32 input; the swiglu's backward
    runs in the attention block, 1.5 or 2.0 float32 T x I above that block's start (a race,
    step to step), i.e. the loss's count (swiglu_ends: the kept swiglu's fourth buffer is not
    held) plus one float32 T x I at the high state. The planner's top-layer moment already
    drops swiglu_ends in a fused bf16 layer (ends16), not under the blockwise attention: there
    the compute-dtype T x I comes off here. mech22e-08 (qwen2 h256 4 x 2 heads, I 1,024, 1 x
    512, blockwise, k/down): blocks 11.55-12.55 MiB against 16.25 planned with
    mlp_backward_transient's two float32 T x I (+30.3% by the highest of three processes,
    12.5 MiB), 12.75 with this; mech22e-16 (qwen3 h128, I 640, 2 x 256, fused, k/down)
    6.56-7.19 against 7.33. Measured backward (in_sample_round21_planner22e, three processes):
    +31.6/+22.9% -> +3.3/+2.0%; predicted with this before measuring, q/down (qwen2, blockwise)
    and o/down (qwen3, fused) +1.6/+1.7% (+29.5/+27.1% without). Float32 keeps the count: there
    the attention block races between 2.0 and 3.0 float32 T x I (mech22e-01 k/down 5 of 10 traced
    steps high, 21.46-21.49 MiB against 21.88 planned, yet low in 3 of 3 measured processes:
    +10.7%; q/down high in 2 of 4 steps and 3 of 3 processes, +1.8%): the count is the high
    state."""
    t = w.targets
    if w.dt == F32 or w.dora or t & MLP != {"down_proj"} or not t & ATTENTION:
        return None
    return w.tokens * s.intermediate * (F32 - (w.dt if w.attn_block else 0))


def lowest_up_buffers(w: Work) -> int:
    """Float32 T x I buffers more in the lowest adapted layer's MLP backward (not recomputed,
    float32, LoRA) adapting up_proj without gate_proj: one with down_proj adapted, one with an
    attention adapter, beyond mlp_backward_transient's single buffer. Traced per block (strict, one
    mx.eval per block of update.evaluate_gradients, 3 steps, mech20a-01's shape: qwen3 h192, I 800,
    2 x 384): the MLP block peaks above the forward's end by 2.02 T x I with up/down, 2.80 with
    k/up, 3.07 steady and 4.02 in a race with k/up/down (q or v instead of k the same, 0.78 with up
    alone). As we read it (the step is mx.compile'd, not traced buffer by buffer): down_proj's input
    gradient is W's product and the LoRA product's, two T x I before their sum; with an attention
    adapter below, gate's input gradient waits for the attention block (the MLP block evaluates only
    parameter gradients), so the swiglu's incoming gradient stays beside up's. With both, priced at
    the race's high state (one T x I above the steady one), which the highest of three processes
    took in 8 of 10 k/q/v/up/down twins (in_sample_round19_planner20a's five: all 15 draws 1.94-2.09
    T x I over the plan without this, -14..-19%, now -0.7..+0.6%; in_sample_round21_planner22a's 1 x
    512 q/k and qwen3 h128 2 x 256 -14/-16% -> +1.2/-0.1%); its 4 x 128 and 2-layer top-only twins
    stayed at the steady state in 3 of 3 processes (1.08-1.12 over: -9.1/-7.6% -> +7.1/+6.4%), yet
    took the high state in traced steps too (4 x 128: 2 of 14, 26.52-26.56 MiB, 26.5 planned). k/up
    and v/o/up 0.76-0.87 T x I over (-6.8..-9.6% -> +0.1..+2.1%), up/down 1.01-1.02 (backward
    -12.8..-17.0% -> -0.3..-0.2%). Not with gate_proj adapted: gate's LoRA needs its input gradient,
    so it forms in the MLP block (which then ends below its start) and the steady state is the
    plan's count (traced: 2.02 T x I above the forward's end in steps 2-3 with gate/up/down,
    k/o/gate/up/down and all seven); step 1 races 1-2 T x I higher there (3.02-4.02; not priced: all
    seven's highest draws were 0.2 T x I over the plan in mech19b's three processes)."""
    t = w.targets
    if w.dt != F32 or w.dora or "up_proj" not in t or "gate_proj" in t:
        return 0
    return ("down_proj" in t) + bool(t & ATTENTION)


def lowest_dora_up_buffers(w: Work) -> int:
    """Float32 T x I buffers more in the lowest adapted layer's MLP backward (not recomputed,
    float32) with a DoRA up_proj: one for DoRA's own gradient (the incoming gradient times the
    kept unscaled `out`, reduced to m's; dora_mlp_backward, which prices it only in a recomputed
    layer), and lowest_up_buffers' (LoRA's, which excludes DoRA): one with down_proj adapted, one
    with an attention adapter. Measured, not traced buffer by buffer (in_sample_round27_planner30a,
    strict, highest of 3 processes, backward measured less planned without it): k/v/up 1.81 float32
    T x I (qwen3 h256 I 1,024, 2 x 384), 1.75 fused, 1.77 at 1 x 128 (where the 1,024 x 256 weight
    is 2 T x I: a T x I buffer, not a weight-sized one), 1.97 and 1.98 in a qwen3 h128 I 2,048
    family (1 x 256, 2 x 384); up alone 0.96 and 0.89; k/v/gate/up 1.68; then, predicted before
    measuring, a qwen2 h192 3 x 1 heads I 896 family's q/up and v/o/up (fused) +1.2/+1.4% (-15.3/
    -13.9% without), up alone's backward +3.5%; k/up/down there 3.04 (-20.9% with down's buffer
    unpriced), then predicted before measuring k/v/up/down (h256) +0.3% and up/down (h128) +0.6%.
    Their LoRA twins 0.02 and -0.17 (lowest_up_buffers). Boundaries measured, not priced: v
    alone (no MLP DoRA) 0.00, bf16 -0.33 and -0.08, two layers (the top layer's backward decides)
    0.86 (-4.1%). heldout27-02's kind (float32 one-layer DoRA k/v/up, 2 x 384): its twins' peaks
    went from -14.4/-18.3/-21.0% to +1.5/+0.3/+0.2%. Not with gate_proj and down_proj both
    adapted: there the stored DoRA rows disagree (in_sample_round23_planner24a's all-seven
    mech24a-01/-07 -9.5/-13.1% would go to +4.1/-0.2%, but its gate/up/down mech24a-04 -5.2% ->
    +6.3% and planner25a's all-seven mech25a-13 -4.7% -> +12.7%; lowest_gate_up_buffers already
    counts one there): left as it was."""
    t = w.targets
    if w.dt != F32 or not w.dora or "up_proj" not in t or {"gate_proj", "down_proj"} <= t:
        return 0
    return 1 + ("down_proj" in t) + bool(t & ATTENTION)


def lowest_gate_down_buffers(w: Work) -> int:
    """One float32 T x I buffer more in the lowest adapted layer's MLP backward (not recomputed,
    float32, LoRA) adapting gate_proj and down_proj without up_proj, beside an attention adapter:
    the race's high state. Traced per block (strict, one mx.eval per block of
    update.evaluate_gradients, 5 steps; mech22e-05, qwen2 h256 4 x 2 heads, I 1,024, 1 x 512,
    blockwise, k/gate/down): the MLP block peaks 2.01-2.03 float32 T x I above the forward's end
    in 2 steps (the plan's count) and 3.01 in 3 (steps 1, 4 and 5), 24.35 MiB in 3 of 3 measured
    processes against 22.65 planned (-7.0%; with this +1.2%); qwen3 h128 I 640 2 x 256 fused
    -8.9% -> -0.1% (in_sample_round21_planner22e); gate/down without an attention adapter is
    not moved (-0.2%). gate_proj's LoRA needs its input
    gradient in the MLP block, beside down_proj's input gradient (as we read it; the step is
    compiled, not traced buffer by buffer). Stored rows it moves (in_sample_round16_planner17f,
    qwen2 h192 6 x 1 heads, I 896, 2 x 256, q/k/o/gate/down, one adapted layer): backward
    -6.7/-7.2/-7.7% -> +1.2/-0.2/+1.2% (fused, 2 layers top only, blockwise; peaks unchanged,
    the forward decides). Not with up_proj too (lowest_up_buffers' note: gate/up/down's step 1
    races 1-2 T x I higher, not priced)."""
    t = w.targets
    if w.dt != F32 or w.dora or "up_proj" in t or not {"gate_proj", "down_proj"} <= t:
        return 0
    return int(bool(t & ATTENTION))


def lowest_gate_up_buffers(w: Work) -> int:
    """One float32 T x I buffer more in the lowest adapted layer's MLP backward (not recomputed,
    float32, LoRA and DoRA alike) adapting gate_proj and up_proj beside down_proj or an attention
    adapter: the buffer float32's donation takes off mlp_backward_transient's count is held here.
    Traced per block (strict, one mx.eval per block of update.evaluate_gradients, 3 steps x 3
    processes; mech24a-02: qwen3 h256, I 1,024, V 1,024 untied, 2 x 128, LoRA on all seven, T x I
    float32 1 MiB): the layer's MLP block (the loss's backward and the MLP's, one evaluation)
    peaked 2 T x I and a T x hidden above its start in 7 of 9 steps, the plan's count (one T x I
    and a T x hidden) in 1, one T x I more in 1; gate/up/down 2.0-2.26 T x I above it in 5 of 6,
    I 512 2.0-2.5 in 6 of 6, V 2,048 2.0-2.25 in 6 of 6 (the loss's T x V does not move it), DoRA
    gate/up/down 2.5-3.3 in 7 of 9. As we read it (the step is mx.compile'd, not traced buffer by
    buffer): both LoRA gradients need their T x I input gradient; down_proj's input gradient is
    W's product and the LoRA product's, two T x I before their sum, and with an attention adapter
    the swiglu's input gradients wait for the attention block (lowest_up_buffers' reading).
    Measured backward, the highest of three processes (in_sample_round23_planner25a, _planner24a):
    LoRA gate/up/down -6.3% -> +0.8% (qwen3 h128, I 512, 3 x 128: -8.9% -> +1.4%), all seven
    -10.6% -> -5.0% (h128: -14.5% -> -7.4%), 2 layers with the top one adapted -8.7% -> -4.0%,
    DoRA all seven and gate/up/down -14.0/-11.0% -> -9.5/-5.2%; stored rows of earlier groups
    -13.6..-5.0% -> -6.3..+4.4% (mech18a-*-kogud, mech20a-06/mech22a-07-gate-up-down,
    sweep16-08), top-only qkvogu backward phases -12.9..-10.2% -> -5.6..-3.6%. Not with gate and
    up alone (mech25a-04: backward -2.1% without, +6.0% with; mech13s-*-gateup, mech22b-03 the
    same). With both down_proj and an attention adapter all seven races one T x I higher (2 of 6
    processes at h256, 2 of 3 at h128, DoRA 1-2 of 3): priced since planner32a
    (lowest_gate_up_down_attention; sweep16-08 and mech19b-*-all-r64-sgd-f32 sat low in their
    two-step draws and reach it in 8 steps). This one
    is a race's common state, not every shape's: predicted before measuring, a qwen2 h192 3 x 1
    heads family (I 768, V 512 tied, 1 x 384, fused, r=8) held the plan's count in 6 of 6
    processes with gate/up/down (1 x 384 and 2 x 192: +10.8% with this, -0.1% without; traced,
    1 of 3 steps took the buffer), while its k/o/gate/up raced 2 T x I (-5.3%, -13.1% without)
    and the h256 family's gate/up/down at 1 x 256 took it (+1.7%, -5.5% without); mech22a-07
    took it in 1 of 3 processes, mech20a-06 in 2 of 3. What decides it is not the shape but
    where the layer's ops fall in MLX's CPU dispatch count (planner28c, groundwork, scratch
    traces): the CPU encoder (mlx/backend/cpu/encoder.h) counts a scheduler task once every
    10 dispatches per stream, and strict mode waits only on those, so an op's buffers are freed
    before the next allocation or not by the process's dispatch count mod 10. The block sits at
    one of four levels (the plan; 0.15-0.25 T x I under it; 1.0 and 1.15-1.4 under) by step,
    not by data (the same batch every step keeps the pattern): mech25a-22's family was at the
    plan in step 3 in 12 of 13 processes, never in the two measured steps (0 of 26); k tiny
    dispatches inserted before step 1's backward (everything after shifts by k) put that
    family and the qwen3 h128 one at the plan in step 2 for k = 3 (2 of 2 processes each), at
    -1.0 T x I for k = 0; its 4 x 4 heads twin (-1.0 in 3 of 3 measured draws) at the plan for
    k = 3 and 6, mech25a-03 (qwen3 h256, took it) for k = 1 and 4, -1.0 for k = 2.
    in_sample_round25_planner28c's one-knob twins land on whichever level their op count gives
    (+10.6% with 4 x 4 heads, -0.2..+4.1% the others): the term prices the top level, which a
    longer run takes."""
    t = w.targets
    if w.dt != F32 or not {"gate_proj", "up_proj"} <= t:
        return 0
    return int("down_proj" in t or bool(t & ATTENTION))


def lowest_gate_up_down_attention(w: Work) -> int:
    """One float32 T x I buffer more in the lowest adapted layer's MLP backward (not recomputed,
    float32, LoRA and DoRA alike) adapting gate_proj, up_proj and down_proj beside an attention
    adapter: the high level of lowest_gate_up_buffers' race (planner31b's "family B"), which
    prices the one buffer both have; heldout30-08's kind (read, not fitted). Measured, not traced
    buffer by buffer (in_sample_round30_planner32a: strict, three processes each, beside two other
    helpers' runs on two cores; draws over the plan without this, float32 T x I): qwen3 h128 4 x 2
    heads, I 768, V 1,024 untied, all seven r=16, 1 x 384 unpacked, blockwise, adafactor
    (mech32a-01) +1.11, +2.12, +1.11; fused +2.03, +0.04, +1.04; qwen2 +0.09, +0.09, +1.11; I 1,152
    +1.04, +1.04, +2.05; 2 x 192 +1.07, +0.07, +1.09; DoRA +0.30, +3.12, +0.30; a qwen3 h256 4 x 4
    heads, I 1,024, 2 x 192 family (mech32a-12) +1.07, +0.05, +1.07 and DoRA +1.06, +0.10, +1.06:
    13 of 18 LoRA draws at or above +1 (the highest of three: 6 of 6 rows), +2 in 3 of 18 (not
    priced). A second set of three processes each (the shared cache lost the first): 10 of 18,
    the highest of three in 5 of 6 (mech32a-01 -0.22 x 3: +11.1% with this); predicted before
    measuring, a qwen2 h192 3 x 1 heads, I 896, V 512 tied, fused, r=8, adamw family +1.01,
    +0.80, +1.01 (-0.1% with this) and a qwen3 h192 6 x 2 heads, I 640, q/k/v/gate/up/down, 2 x
    256 packed, adamw8bit one +0.96, +0.96, +0.12 (-1.1%). DoRA sits at other levels (+0.1..+0.3,
    +1.06, +2.8..+3.1; the highest of three at +1 or more in 4 of 5 sets), priced alike: its
    highest draws come closer (h128 -18.3 -> -12.4%, h192 -9.9%, h256 -5.7 -> -0.3% and +5.0%
    in the second set). Eight-step runs (planner_race_steps.py, two processes each, not stored): qwen2, 2 x
    192, k/o/gate/up and the h256 family at +0.9..+1.1 in 2 of 2 processes (steps 1-8), mech32a-01
    in 1 of 2 (+2.12 at step 7; the other at or under +0.12 in all eight). Boundaries measured:
    gate/up/down without an attention adapter (lowest_gate_up_buffers' one buffer) -0.15..-0.49
    at h128 and -0.23 x 3 at h256; bfloat16 -0.43 x 3 (lowest_gate_up_buffers16's); checkpointed
    (another path) and 2 layers (the top layer decides the peak) unchanged. Not priced without
    down_proj: k/o/gate/up took +0.87 in 2 of 3 draws (mech32a-08, left open). As we read it
    (the step is mx.compile'd): lowest_gate_up_buffers' reading with both of its causes at once,
    down_proj's two T x I before their sum while the swiglu's input gradients wait for the
    attention block; which level a step takes is MLX's CPU dispatch race (planner28a/28c),
    drawn per step (planner31b), so a real run meets the high level. The trade: stored rows low
    in their two-step draws go over (sweep16-08 +0.7 -> +9.1%, mech19b-*-all-r64-sgd-f32 +4.2 ->
    +9.3%, mech27a-11 +6.8 -> +14.2%), and each meets the high level in 8 steps (two processes
    each): sweep16-08 in 2 of 2 (the plan +0.5% over that), mech19b-*-f32 in 2 of 2 (+4.5%),
    mech27a-11 to within 0.1 T x I of the plan with this in 6 of 8 (with planner31b's six
    stored processes), one of them one T x I higher (step 7: -5.7%)."""
    t = w.targets
    if w.dt != F32 or not {"gate_proj", "up_proj", "down_proj"} <= t:
        return 0
    return int(bool(t & ATTENTION))


def lowest_gate_up_buffers16(w: Work) -> int:
    """One float32 T x I buffer more in the lowest adapted layer's MLP backward (not recomputed,
    bfloat16, LoRA) adapting gate_proj, up_proj and down_proj: the bfloat16 side of
    lowest_gate_up_buffers' race, priced at the level a run of more than two steps takes.
    heldout29-10's kind (read, not fitted: qwen2 h512, I 1,792, 4-bit, q/v/gate/up/down, 1 x 512
    packed, accumulation 2; three processes -0.18, +0.82 and +1.82 float32 T x I over the plan
    without this). in_sample_round29_planner31a (strict, three processes each, beside two other
    helpers' runs on two cores), draws over the plan without this in float32 T x I: qwen2 h256
    I 1,536 4-bit q/v/gate/up/down 1 x 512 packed (mech31a-01) +0.87, +0.87, -0.13; no 4-bit
    +0.87 x 3; accumulation 1 +0.84, +0.84, -0.16; gate/up/down alone +1.26, +1.26, +1.20;
    blockwise +0.29 x 3; qwen3 h128 I 768 k/o/gate/up/down 2 x 256 (mech31a-10) +0.78, +0.78,
    +0.90; gate/up/down alone +1.15 x 3; 4-bit -0.09 x 3. Scratch runs of 6-12 steps (one
    process each, every micro-batch's backward; not stored): mech31a-01 +0.74/+0.87 in steps 2-6
    and +1.87 once; mech31a-10 +0.90 in steps 2, 5, 6; its 4-bit twin -0.1 in steps 1-5, +0.90
    in step 6; gate/up/down alone +1.15/+1.26 in steps 1, 3, 5 and +0.34 between; the blockwise
    twin +0.22 in step 1, -0.58..-0.71 after (+10.0% with this: a lower level, not priced apart,
    since mech25a-09-v1024-bf16, blockwise too, reaches +1.30); stored all-seven rows held at or
    under the plan without this in two steps reach it later: mech19b-*-bf16-3x64-*-all-r64-sgd
    +0.76 (step 6), -adafactor +0.77 (steps 7 and 12 of 12), mech25a-09-v1024-bf16 +1.30 (steps
    3, 6). The top level (+1.8, one T x I more) is rare: not priced. The trade: mech19b-*-gud
    (T 192, r=64, gate/up/down alone) never went over the plan without this in 24 micro-batches
    (12 steps, twice), so it is 17% over (8.2% before); -adam and -adafactor 7.4/9.6% over their
    two-step draws. As float32's (as we read it; the step is mx.compile'd, not traced buffer by
    buffer): both LoRA gradients need their T x I input gradient and down_proj's input gradient
    is two T x I before their sum; which level a step sits at is MLX's CPU dispatch race
    (planner28a/28c), not the shape. Not without down_proj (in_sample_round13_planner15w's k/o/
    gate/up rows sit within 5.1% without it; mech31a-09, q/v/gate/up, +0.60..+0.69 over in 3 of
    3, left open), nor a recomputed layer (lowest_gate_up_down16), nor float32."""
    return int(w.dt != F32 and not w.dora and {"gate_proj", "up_proj", "down_proj"} <= w.targets)


def lowest_recomputed(s: ModelShape, w: Work) -> int:
    """The fullest moment of a recomputed lowest adapted layer (checkpointed) whose only
    adapter is down_proj or up_proj, beyond the checkpointed inputs: the recomputation
    (backends/mlx/checkpoint.py, after the incoming gradient) and not the MLP backward holds it.
    down_proj alone: the forward's down_proj moment again (mlp_forward_peak: the swiglu's two
    inputs beside its output and that output's float32 cast), as planned for the forward.
    up_proj alone: two float32 T x I buffers in both dtypes and the incoming gradient (float32
    T x hidden); the recomputation stops at the swiglu's inputs here (no adapter needs its
    output), so not the forward's gate/up moment. Measured, not traced: the lowest-layer-only
    LoRA up/down draws of in_sample_round8_dora and in_sample_round10_planner11g (T 128-512,
    I 768-1,024, hidden 128-256) held 4.1-4.5 bf16 / 2.0 fp32 T x I (up) and the forward's down
    moment within 0.35 T x I (down); the plan without this was 5-40% under in their backward.
    A DoRA down_proj the same without its norm's float32 W + BA (dora_down_norm): a function of
    the weights alone, it need not wait for the incoming gradient as the recomputed input does
    (checkpoint.py's mx.depends), so it is formed and freed before (inferred, not traced):
    round 7-8's four one-layer DoRA down_proj draws -1.7..-31.6% -> +1.8..+8.3% (with the norm:
    +11.6..+35.2%). Not a lone gate_proj: its recomputed backward races (mech11g-qwen3-h128-
    4x1-1l-i1024-bf16-1x256-ckpt-gate: 4.87 MiB in 7 of 11 runs, 3.87-3.94 in the others, one
    float32 T x I apart; uncompiled, MLX_DISABLE_COMPILE=1, 3.94 in 4 of 4: compiled_lora_sum's
    kind); nor a DoRA up_proj. Re-measured (planner17s, in_sample_round16_planner17s, 13 bf16
    twins of sweep16-01): the low state is this plan less 2 float32 T x hidden and the high one
    that plus one float32 T x I, each within 0.01 MiB; which a run takes follows MLX's evaluation
    order and thread timing (one shape both ways), so neither is priced."""
    alone = w.targets & (ATTENTION | MLP)
    if alone == {"down_proj"}:
        return mlp_forward_peak(s, w) - dora_down_norm(s, w)
    if w.dora:
        return 0
    if alone == {"up_proj"}:
        return w.tokens * (2 * s.intermediate + s.hidden) * F32
    return 0


def only_recomputed_attention(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed (checkpointed) float32 layer that is both the top and the lowest
    adapted one (planner.estimate's `only`: one adapted layer, unadapted layers below it or none)
    adapting attention projections alone, LoRA or DoRA, beyond mlp_backward_transient's count: one
    float32 T x I less one float32 T x hidden, so that its fullest moment is the not-recomputed
    lowest layer's (that count: one float32 T x I beside the T x hidden). Why: the attention
    adapters need the MLP's input gradient, so the swiglu's VJP forms its float32 T x I input
    gradients as it does without recomputation; and the recomputation frees the checkpointed layer
    input (T x hidden, in planner.estimate's ckpt_inputs), which no gradient needs once recomputed:
    nothing below is trained. Traced per block (strict, one mx.eval per block of
    update.evaluate_gradients, 3 steps x 2 microbatches, scratch scripts): the one layer's block
    (the loss's gradient, the recomputation and the layer's backward) races step to step between a
    low state (about the plan without this) and a high one, which its not-checkpointed twin's block
    reaches too (qwen3 h256 I 1,152 3 x 128: 14.59 against 14.53 MiB; qwen2 h192 I 512 2 x 160:
    6.43 against 6.44), and which a whole process nearly always meets once (37 of the priced twins'
    39 draws within 0.25 T x I of their twin's highest). Uncompiled (MLX_DISABLE_COMPILE=1) the
    same block peaks (14.22-14.56 MiB). Measured (in_sample_round23_planner25b and planner24b,
    three processes per twin, the highest): the plan without this was under by this term within
    0.06 MiB in three shapes, T x I - T x hidden = 1.31 MiB (o, k, q -1.25, DoRA o -1.28, chunk
    128, accumulation 1, fused, a second layer below unadapted), 0.39 (qwen2 h192, o and v) and
    0.75 (qwen3 h128 I 896, 1 x 256, q): -6.1..-9.1% -> -0.0..+1.2%; v alone in the first shape
    +3.3% (its attention part is over-counted, not priced here), the 2-layer top-adapted qwen2 twin
    +3.0% (its block peaked one T x hidden lower in 12 of 12 traced steps: not priced). Stored rows
    it moves: in_sample_round18_planner19s (float32 one-layer checkpointed twins, T x I 0.05-0.61
    MiB) worst -9.7% -> +5.0% (mech19s-09-h256 +4.1 -> +5.0%, the rest -1.7..+3.3%), round 1's
    mech-oonly-ckpt -5.7% -> -0.0%, mech22e-11-ckpt-k -7.6% -> +0.1%. Never below the count (I <
    hidden: mech6-*-h384-*-i320-*-ckpt-qv, -0.3% with the count). Not bf16 (its twins are 5-7% over
    already: mech25b-06/-10), nor with an MLP adapter (lowest_recomputed and lowest_gate_up price
    those), nor a 2+-layer adapted stack (its lowest layer is recomputed in its own block, after
    the loss's: mech24b-07 unchanged)."""
    if not bottom or w.dt != F32 or w.targets & MLP or not w.targets & ATTENTION:
        return 0
    return max(0, w.tokens * (s.intermediate - s.hidden) * F32)


def only_recomputed_attention16(s: ModelShape, w: Work, bottom: bool) -> int:
    """Bytes a recomputed (checkpointed) bf16 layer that is both the top and the lowest adapted
    one (planner.estimate's `only`) adapting o_proj and/or v_proj alone, LoRA, holds LESS at its
    MLP backward than the plan counts (subtracted in mlp_backward_transient): the checkpointed
    layer input (T x hidden, compute dtype, in planner.estimate's ckpt_inputs), which the
    recomputation frees since nothing below is trained (only_recomputed_attention's finding in
    float32), and layer_parts' bf16 RMSNorm-output copy (T x hidden float32, counted only when
    the compute dtype is not float32), which no gradient of this layer needs here: 3 bf16
    T x hidden. Measured, not traced to these two buffers (named by their sizes: the one layer's
    whole backward is one mx.eval block of update.evaluate_gradients, whose peak races step to
    step by one T x hidden to one T x I). in_sample_round24_planner26a (the highest of three
    fresh processes each): without this the plan was over by 2.95-2.97 bf16 T x hidden with o
    alone, 2 layers with the top one adapted, blockwise and 2 x 128 (qwen3 h384 6 x 2 heads,
    I 928, 1 x 256: +5.7..+7.9%), 2.99 at h512 8 x 2 (I 1,216 and 2,048), 2.97 at I 1,536
    (+5.0..+7.2%), 3.97 with v alone (+9.8%), 4.23 in a qwen2 h256 4 x 2, I 1,024 family at
    2 x 128 (+9.6%; at 1 x 256 6.98, +16.8%: its processes never met the high state, which a
    per-block trace, strict, steps 1-3, showed at the 2 x 128 twin's bytes); the stored
    mech25b-10 (qwen3 h256 I 1,152, 3 x 128, blockwise) 2.98, mech25b-06 (qwen2 h192, 2 x 160,
    accumulation 2) only 1.53 in its highest draw (3.18 in its other): the one twin this puts
    under (+4.9% -> -4.7%). With these all within -0.1..+2.8% except qwen2 1 x 256 (+9.6%).
    Only the floor every twin shares is priced. T x hidden, not T x I or score squares: the
    same 2.97-2.99 at I 928 and 1,536 (h384) and at 1,216 and 2,048 (h512), and at 2 x 128
    (half the squares) and blockwise. With a q_proj or k_proj adapter (the scores' gradient
    formed: attention_grads) only with the fused attention: fused_scores_moment.
    Not float32 (only_recomputed_attention: mech26a-07 -0.0%), nor not checkpointed (mech26a-05
    is 10.5% under, another kind), nor with an MLP adapter, DoRA or a quantized base (not
    measured)."""
    if (not bottom or w.dt == F32 or w.dora or w.quantized or w.targets & MLP
            or not w.targets & ATTENTION
            or attention_grads(w.targets, bottom)[0] and not fused_scores_moment(w)):
        return 0
    return w.tokens * s.hidden * (w.dt + F32)


def fused_scores_moment(w: Work) -> bool:
    """Does only_recomputed_attention16's credit also apply with a q_proj or k_proj adapter (the
    scores' gradient formed: attention_grads)? Yes with the fused attention; no with the
    blockwise one, whose attention moment is priced under. The credit is taken at the MLP
    backward's moment only; the plan's peak is the larger of that and the attention backward's
    moment (planner.estimate's layer_t), so where the scores' squares set the peak the credit
    does not apply: a condition on the moment, not on the sequence length. Traced per block
    (strict, one mx.eval per block of update.evaluate_gradients with MLX's peak reset, steps
    1-3, one process each; scratch, not committed): q alone, qwen3 h384 6 x 2 heads, the one
    layer's single block peaked in its highest step 3.97-4.09 bf16 T x hidden under the plan's
    MLP moment at I 928 (128, 256 and 512 tokens) and I 1,856 (256 and 512), the block's rise
    growing with I exactly as the count's (+12.08 T x hidden from I 928 to 1,856): not a T x I
    or a score-square buffer; at I 384 (= hidden) it peaked 2.1 above that MLP moment less 4:
    the attention moment, which the plan priced 5.1 over it. Blockwise, the same twin was
    3.8-4.7 under at its MLP moment, but round 5/6's blockwise one-layer q/k rows (I = hidden,
    768-2,048 tokens) peak 0.0-1.2 under their MLP moment, so at another one (the attention's,
    by elimination), which blockwise_backward_bytes' checkpointed credit (3 T x hidden float32)
    prices under (mech5-qwen2-h256-8x2-1l-bf16-1x1024-ckpt-q: the whole plan at that moment
    16.35 bf16 T x hidden, the traced peak 19.33, its MLP moment 19.60): there this credit put
    them 9-16% under, so not priced. Fused, that twin's attention moment is over (its fused
    variant traced 104.00 against 108.54 planned). Measured (in_sample_round25_planner28b
    and planner26a's q/k rows, three processes each, the highest): without the credit the plan
    was 3.19-5.07 T x hidden over at the MLP moment (q, k, q/k/v/o at 128-512 tokens, top of
    2 layers, qwen3 h384 I 928 and qwen2 h256 4 x 2 heads I 1,024: +4.7..+9.2%), with it
    +0.3..+3.5%; at 512 tokens in the h384 shape the attention moment sets the plan (q alone
    +15.3%, k alone +14.0%, q/k/v/o -0.8%: unchanged, left open)."""
    return not w.attn_block


def lowest_recomputed_less(s: ModelShape, w: Work, layers: int) -> int:
    """Bytes the recomputed lowest adapted layer of a 2+-layer checkpointed bf16 LoRA stack
    adapting gate/up/down (lowest_gate_up_down16's kind) holds less at its MLP backward's
    fullest moment than the upper layer's count that planner.estimate's "backward, bottom
    layer" took for it. (1) Its kept parts: the recomputation keeps what layer_parts keeps for
    a lowest layer, whose input needs no gradient (MLX differentiates only along paths to the
    trainable arrays): not the layer input, and without a q_proj or k_proj adapter not the
    scaled q/k/v, the causal mask or Qwen3's q/k norm inputs (attention_grads, qk_norm_kept),
    as a one-layer stack's top layer is priced. (2) Its MLP backward count: two float32 T x I
    (mlp_backward_transient's lowest count and lowest_gate_up_down16's buffer), one fewer than
    an upper layer's three. Traced per block (strict, one mx.eval per block of
    update.evaluate_gradients, steps 1-3, one process each): the lowest layer's MLP block rose
    above its start 1.78-2.29 float32 T x I less than the top layer's in mech23c-01 (qwen3
    h256, I 768, 3 x 128, v/o/gate/up/down; (1) + (2) = 2.07) and 1.43-1.52 less in mech25d-06
    (h192 3 x 1 heads, 2 x 128; 1.77); with q_proj added (mech25d-02: the lowest keeps q's side,
    1.33) 0.30-1.78, a race. Measured (the highest of three processes each,
    in_sample_round22_planner23c and in_sample_round23_planner25d): the bottom moment decided
    13 such twins +3.8..+11.9% over without this; with it (2 and 3 layers, h192/h256/h384,
    4-bit or not, qwen2, blockwise, chunk 128, q added) they are within -1.9..+5.0%, the top
    moment deciding in 12 (the r=8 twins stay +5.8/+6.1%: their top moment races). A 3-layer
    trace (mech25d-01) shows the middle layer's MLP block at the upper count (7.3-7.8 T x I
    above its start, the top's 8.2-8.6) and only the lowest below it (5.1-6.6). Not float32: its
    twin (mech25d-03) measured the bottom moment at the upper count (-0.8% without this, -3.4%
    with it; its draws one float32 T x I apart); nor sweep22-05 (q/k/v/o/gate/up, no down_proj,
    3 layers: its lowest moment measured at the upper count, -0.2%); nor DoRA (not measured)."""
    if layers < 2 or not lowest_gate_up_down16(s, w, True):
        return 0
    parts = layer_saved(s, w) - layer_saved(s, w, bottom=True)
    count = (mlp_backward_transient(s, w, True) - mlp_backward_transient(s, w, True, True)
             - lowest_gate_up_down16(s, w, True))
    return parts + count


def up_down_recomputed(s: ModelShape, w: Work, bottom: bool = False) -> int:
    """Extra bytes of a recomputed MLP backward adapting down_proj and one of up_proj and
    gate_proj, beyond mlp_backward_transient's count: one float32 T x I buffer in an upper
    layer (the adapted projection's LoRA gradient is formed in float32 while down_proj's input
    gradient is still alive; gate+down in float32: donated, not counted); with up+down in the
    lowest layer, which keeps nothing of the swiglu's backward (swiglu_kept) and forms it
    there, two float32 and two compute-dtype ones. Measured, not traced: in_sample_round8_mlp
    (mech8-qwen3-h160-5x1-*-i1152-*-2x256-ckpt-*, T 512): up+down fp32 upper layers (2-4 layers)
    were 0.6-1.9 T x I fp32 buffers under (repeats of the same runs 1.9: fp32 donation
    varies), bf16 2.9 bf16 buffers, gate+down bf16 2.0 (fp32 +0.4% without); adapting the
    lowest layer alone, 3.9 fp32-sized (fp32) and 5.6 bf16 (bf16) under, backward phases -39%
    and -42%. With this term all of these are within 6.1%; the up+down LoRA draws of rounds
    7-8's fused/DoRA groups went from -5.8..-12.7% to -5.2..+0.9%, round 1's mech-g-bf16-
    gatedown -10.1% -> -2.3% and mech-g-bf16-updown -3.2% -> +5.2%. Shared with DoRA (the same
    LoRA product underneath; dora_mlp_backward unchanged): round 8's 4-bit DoRA up+down draws
    -6.2/-3.0% -> -0.1/+0.9%. Not priced: at T 256 the lowest layer's extra was ~7 bytes per
    T x I entry, not 12 (tests/test_planner_phases.py uses T 512), and a 2-layer bf16 upper
    case (h128, I 1,024, 2 x 256) raced between 15.7 and 19.0 MiB in its backward."""
    t = w.targets
    if "down_proj" not in t or len(t & {"gate_proj", "up_proj"}) != 1:
        return 0
    if "gate_proj" in t:  # gate+down: the same float32 buffer in bf16 (fp32: donated)
        return 0 if bottom or w.dt == F32 else w.tokens * s.intermediate * F32
    if bottom:
        return 2 * w.tokens * s.intermediate * (F32 + w.dt)
    return w.tokens * s.intermediate * F32


def lowest_gate_up(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed lowest adapted float32 LoRA layer adapting gate_proj and
    up_proj, beyond mlp_backward_transient's count (no T x I buffer: float32 donates): both
    LoRA gradients need their float32 T x I input gradient, so the swiglu's backward holds two,
    while three float32 T x hidden buffers the count holds are gone by then (as in
    attention_backward_transient's recomputed lowest layer). Measured, not traced
    (in_sample_round13_planner15p, mech15p-qwen3-h64-2x2-1l-*-f32-4x128-ckpt-c256-*, strict,
    the first block of update.evaluate_gradients alone, uncompiled: the same bytes every step):
    hidden 64, I 128 +131 KB over the count (+0.5 T x I), I 512 +1.57 MB (+1.5 T x I); 2 T x I
    - 3 T x hidden puts both within 0.13 T x I. Never below the count: with I = hidden (h128) the
    block was 1.0 T x I under it, but that moment did not decide, and round 6's heldout6-05
    (I < hidden, read, not fitted) was already 5.1% under with the count. With down_proj too
    (-i512-down) the block held 2.5-3.5 T x I more than the count (uncompiled, step to step):
    the same two are counted. Compiled, as trained, the block ran up to 2.2 T x I (I 128) and
    2.1 (I 512) above the uncompiled figure, step to step (thread timing: a race, not priced).
    in_sample_round12_sweep's sweep13-14 (-15.4%) was measured before the blockwise backward's
    first block waited (backends/mlx/attention._backward): its twin, with this term, -11.2% and
    -13.6% (1 and 3 of 4 fresh runs) without that wait, -1.0% and -5.9% (3 and 3 of 6) with it.
    bf16 is left as it was: no common count (uncompiled, -bf16 at I 128 +0.15-0.20 MB,
    -i512-bf16 +0.64 MB)."""
    t = w.targets
    if not bottom or w.dt != F32 or w.dora or not {"gate_proj", "up_proj"} <= t:
        return 0
    return (max(0, w.tokens * (2 * s.intermediate - 3 * s.hidden) * F32)
            + (lowest_gate_up_down(s, w) if "down_proj" in t else 0))


def lowest_gate_down_recomputed(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed lowest adapted float32 layer (checkpointed; LoRA and DoRA
    alike) adapting gate_proj and down_proj without up_proj, beyond mlp_backward_transient's
    count (no T x I buffer: float32 donates, and up_down_recomputed counts none for gate+down in
    the lowest layer): two float32 T x I less two float32 T x hidden. As we read it (the step is
    mx.compile'd, not traced buffer by buffer), lowest_gate_up's kind: down_proj's LoRA gradient
    needs its recomputed input (the swiglu's output) and gate_proj's its T x I input gradient,
    formed from down_proj's. Traced per block (strict, one mx.eval per block of
    update.evaluate_gradients, 3 steps; the MLP block holds the loss's backward, the
    recomputation and the MLP's backward): mech24a-11 (qwen3 h128, I 512, 2 x 128, fused, LoRA r=4
    on q/k/v/o/gate/down; T x I 0.5 MiB, T x hidden 0.125) peaked at 7.50-7.51 MiB in 11 of 15
    steps (8.01 in 4) against 6.62 planned without this; gate/down 5.78-5.91 (6 of 6) against
    5.03, q/gate/down 7.08 (8 of 9) against 6.34, I 1,024 11.77-11.78 (5 of 6) against 9.89;
    qwen3 h256 I 1,024 blockwise packed q/gate/down (mech25a-20) 15.91 in steps 2-3 against
    14.40 (this: 15.90), step 1 0.9 MiB higher (taken by 3 of 3 measured processes: -5.4% with
    this, not priced). 2 T x I - 2 T x hidden sits 0.0-0.14 MiB under each steady level.
    Measured, the highest of three processes, all three alike (in_sample_round23_planner25a,
    _planner24a): -16.1..-10.5% -> -2.1..+0.1% (mech25a-14/-15/-17, mech24a-11), DoRA q/k/v/o/
    gate/down (mech24a-10) -9.0% -> -0.4%. Not without down_proj (q/k/v/o/gate -4.3%), nor with
    2 layers (the lowest is not the top: -3.3%), nor bf16 (-12.6%, 0.6 MiB under: not traced);
    no other stored in-sample row moves. Predicted before measuring (qwen2 h192 3 x 1 heads, I
    768, V 512 tied, 1 x 384, blockwise, r=8, adam): k/gate/down -2.2% (-15.3% without; 3 of 3
    processes alike), DoRA v/gate/down +0.6% (-11.2% without)."""
    t = w.targets
    if not bottom or w.dt != F32 or "up_proj" in t or not {"gate_proj", "down_proj"} <= t:
        return 0
    return max(0, 2 * w.tokens * (s.intermediate - s.hidden) * F32)


def lowest_gate_down16(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed (checkpointed) bfloat16 LoRA layer that is both the top and
    the lowest adapted one (planner.estimate's `only`) adapting gate_proj and down_proj without
    up_proj, chunked loss or not, beyond mlp_backward_transient's count (one compute-dtype
    T x I and a float32 T x hidden): that T x I buffer in float32, and with an attention
    adapter one more compute-dtype T x I (one float32 T x I in all). As we read it (the step is
    mx.compile'd, not traced buffer by buffer): down_proj's float32 LoRA path makes the swiglu's
    cotangent float32, so gate_proj's input gradient is formed in float32 (as in float32,
    lowest_gate_down_recomputed); attention adapters below need the MLP's input gradient, so
    the swiglu's VJP forms its up side's too. Traced per block (strict, one mx.eval per block of
    update.evaluate_gradients, steps 1-3, one process each; the one layer's MLP block holds the
    loss's gradient, the recomputation and the MLP's backward): in_sample_round32_planner33a's
    qwen2 h256 4 x 2 heads, I 1,024, V 512 tied, 2 x 128 packed, r=64 (T x I float32 1 MiB)
    peaked 0.87, 1.37 and 1.86 T x I over the plan without this (q/k/v/o/gate/down), 0.44-1.37
    under a chunked loss (128), a steady 0.87 with a second, unadapted layer below; gate/down
    alone 0.12-0.25: levels one bf16 T x I apart, step to step (MLX's CPU race). Measured (the
    highest of three processes, beside two other helpers' runs), over the plan without this, in
    T x I: with attention adapters 0.85-0.88 (k/gate/down, unpacked, 2 layers), 1.35 (fused),
    1.73-1.88 (the base, r=8, chunk 128) and 0.50 in a qwen3 h192 6 x 2 heads, I 768 twin
    (q/k/v/o/gate/down); gate/down alone 0.75 (qwen2) and 0.25 (qwen3). Priced: the floor both
    families' highest draws share, in each case (the qwen3 twin lands at the plan's +5%, its
    gate/down twin +3%); the higher levels (up to 0.9 T x I more, a race) are not priced. The
    stored mech25a-18 (qwen3 h128, fused, unpacked, r=4) -12.6% -> -2.5%. Predicted before
    measuring (three more shapes): q/v/gate/down qwen2 h192 fused -1.7% (-12.5% without),
    k/o/gate/down qwen3 h128 packed +2.7% (-7.0%), gate/down alone qwen2 h320 -7.7% (-13.7%:
    gate/down alone reaches 0.25-1.13 T x I over across three shapes). Not with up_proj
    (lowest_gate_up_down16's path: mech33a-03 -0.5% without this), nor without down_proj
    (mech33a-13, q/k/v/o/gate: at the plan), nor float32 (lowest_gate_down_recomputed: mech33a-09
    -7.2%, its high draws 1.15 T x I over that term, left open), nor DoRA or a 2+-layer adapted
    stack (not measured)."""
    t = w.targets
    if (not bottom or w.dt == F32 or w.dora or "up_proj" in t
            or not {"gate_proj", "down_proj"} <= t):
        return 0
    return w.tokens * s.intermediate * (F32 - w.dt + (w.dt if t & ATTENTION else 0))


def lowest_gate_up_down16(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed lowest adapted bfloat16 LoRA layer adapting gate_proj,
    up_proj and down_proj under an unchunked loss (planner.estimate adds it to the MLP
    backward's moment), beyond mlp_backward_transient's count (one float32 T x I and a float32
    T x hidden): one float32 T x I more. Traced to the block, not to the buffer
    (in_sample_round22_planner23a, strict, one mx.eval per block of update.evaluate_gradients):
    mech23a-01 (qwen2 h256, 3 layers with only the top one adapted, I 1,024, 2 x 256, all
    seven, r=64) peaked in the top layer's MLP block (the loss's gradient, the recomputation
    and the MLP backward) at 25.14 MiB against 23.04 planned without this, +1.05 float32 T x I;
    in three processes +0.70, +0.70, +1.05; MLP-only +1.28 (3 of 3), r=8 +0.6 and +2.1 (a
    race), a one-layer model +1.0, 2 x 96 +0.25 (a trace +1.24); heldout22-08 (I 1,600,
    hidden 512, read, not fitted) +1.00, +1.00, +1.50. Under a chunked loss (whose gradient
    reaches the layer already formed, chunked_loss) 6 of 7 draws held nothing of it: mech23a-06
    (chunk 64) +0.05..+0.20 in 3 of 3 (one trace +1.05), mech19b-*-ckpt (chunk 128, T 192)
    below the count in 3 of 3: not counted there. As float32's lowest_gate_up, both LoRA
    gradients need their T x I input gradient (as we read it). Measured with down_proj only;
    not with a 2+-layer adapted stack, whose lowest layer takes the upper count
    (planner.estimate's `only`)."""
    t = w.targets
    if not bottom or w.dt == F32 or w.dora or not {"gate_proj", "up_proj", "down_proj"} <= t:
        return 0
    return w.tokens * s.intermediate * F32


def lowest_gate_up_attention16(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed (checkpointed) lowest adapted bfloat16 LoRA layer adapting
    gate_proj and up_proj without down_proj, beside an attention adapter, beyond
    mlp_backward_transient's count (one float32 T x I and a float32 T x hidden): the high level
    of its MLP block's race, two float32 T x I and one bfloat16 T x I less two float32
    T x hidden. heldout32-01/-07's kind (read, not fitted: their backward phases 12.8% and
    16.7% under). Traced per block (strict, one mx.eval per block of
    update.evaluate_gradients, MLX's peak reset before each; steps 1-3, one process each;
    scratch): the layer's MLP block (the recomputation and the MLP's backward) sits at a low
    level about the plan without this (-0.2..+0.5 T x I) or at a high one two float32 T x I
    above it, by step (MLX's CPU dispatch race, planner28a/28c/31b). High levels over the plan
    without this, float32 T x I (this term in brackets): in_sample_round32_planner33c's qwen2 h192
    6 x 1 heads, I 1,024, 3 x 128, blockwise, chunk 64, k/v/gate/up +2.08/+2.14/+2.15 (2.13),
    fused +2.06..+2.12, q/k/v/o/gate/up +2.14 in 1 of 3 steps, I 512 +1.72..+1.81 (1.75);
    qwen3 h256 4 x 2 heads, I 768, 2 x 256, fused, chunk 128, k/v/gate/up +1.78 in 1 of 3
    (1.83), unchunked +1.78 in 2 of 3, 2 layers with the top one adapted +1.78 in 2 of 3,
    I 2,048 V 512 +2.23 in 1 of 3 (2.25, I/h 8: a T x I count, not a T x hidden one).
    Measured (three fresh processes each, beside two other helpers' runs on two cores): the
    highest draw at the high level in 8 of 10 such twins (backward -8.9..-30.1% -> -0.4..+1.6%);
    qwen2 unchunked (-17.2% -> +14.8%) and qwen3 q/k/v/o/gate/up (-7.0% -> +12.5%, its draws
    one T x I lower) stayed below it in 3 of 3, and meet it in longer runs (one process of 8
    steps each: steps 5-6 and step 7, within 0.02 T x I of this plan). Stored rows it moves:
    in_sample_round13_planner15p's two bf16 rows (qwen3 h64, I 128 and 512, 4 x 128, chunk 256)
    backward -9.5/-23.5% -> -1.1/+1.2% (peaks unchanged). As we read it (the step
    is mx.compile'd, not traced buffer by buffer): both LoRA gradients need their input
    gradient in float32 while the attention adapters need the MLP's input gradient, formed
    from the compute-dtype ones; lowest_recomputed_high's float32 reading without down_proj.
    Not without an attention adapter (gate/up alone: +0.0..+0.5 in 3 steps x 2 families; the
    I 2,048 twin -12.2%, 0.63 T x I, left open), nor with down_proj (lowest_gate_up_down16's
    path: under a chunked loss its twins -10.3/-16.9%, left open), nor float32 (chunked qwen2
    k/v/gate/up -19.1%: lowest_recomputed_high's chunked case, left open), nor DoRA (not
    measured); a 4-bit base not measured (the LoRA path is the same)."""
    t = w.targets
    if (not bottom or w.dt == F32 or w.dora or "down_proj" in t or not t & ATTENTION
            or not {"gate_proj", "up_proj"} <= t):
        return 0
    return w.tokens * (s.intermediate * (2 * F32 + w.dt) - 2 * s.hidden * F32)


def lowest_gate_up_down(s: ModelShape, w: Work) -> int:
    """With down_proj adapted too (float32, lowest recomputed layer, gate/up/down), the lowest
    state a run takes: two more float32 T x I buffers, less five float32 T x hidden. down_proj's
    LoRA gradient needs its recomputed input (the swiglu's output, T x I) and the swiglu's
    backward its input gradient (T x I): the recomputation no longer stops at the swiglu's inputs
    (as we read it; not traced buffer by buffer: the step is mx.compile'd). Measured, compiled, as
    trained (in_sample_round17_planner18a, 6-7 fresh processes per twin): the state a run takes
    races (one float32 T x I apart), but no draw sat below this: the lowest draw above the plan
    without it, in T x I, was +0.55/+0.58/+0.60 (h256 I 896 at 1 x 256, 2 x 128, 2 x 256),
    +0.54 fused, +0.60 q/o instead of k/o, +1.30 at I 1,792 and +1.33 at hidden 128; 2 T x I
    - 5 T x hidden gives 0.57, 0.57, 1.29, 1.29 (the T x hidden coefficient fitted on these
    three shapes; all within 0.45% of the lowest draw now, fused 0.2% over). The median draw was
    about one T x I higher still (not priced: a race). Without k/o (-gud) the lowest draw was
    +0.29 (1 of 7; the others +1.17..+1.29): now 2.6% over that one. The 2-layer twin (+0.48)
    and the not-checkpointed one (+0.61, not this term's path) are unchanged: their peak is
    elsewhere. Uncompiled (MLX_DISABLE_COMPILE=1) the base twin held +2.55 T x I in 3 of 3, as
    lowest_gate_up's -i512-down note found. Predicted before measuring (6 processes each):
    mech18a-qwen2-h192-6x2-1l-i768-*-1x384-ckpt-kogud plan 14.45 MiB, draws 14.22-16.48 (the
    lowest 1.6% under the plan: there 2 T x I - 5.9 T x hidden); mech18a-qwen3-h256-*-i1280-*-
    1x512-ckpt-qvgud plan 31.68, draws 31.80-34.98. Held-out, predicted only: heldout16-07
    -6.0% -> -2.7%, heldout17-11 -5.5% -> -0.5% (no other held-out row moves)."""
    return max(0, w.tokens * (2 * s.intermediate - 5 * s.hidden) * F32)


def lowest_recomputed_high(s: ModelShape, w: Work, bottom: bool) -> int:
    """Extra bytes of a recomputed lowest adapted float32 LoRA layer (checkpointed) adapting
    gate_proj, up_proj and an attention projection, under an unchunked or a chunked loss alike
    (planner.estimate adds it to the MLP backward's moment), beyond lowest_gate_up's count: the
    high state of the MLP block's race (planner27a/28a/31b's "family B", heldout25-02's kind),
    which a run of a few steps meets. With down_proj too (all seven, or k/gate/up/down): six
    float32 T x hidden, about the T x hidden buffers lowest_gate_up (3) and lowest_gate_up_down
    (5) take off the count (as we read it: the attention adapters need the MLP's input
    gradient, so the recomputed attention's T x hidden buffers live through the MLP's backward;
    the step is mx.compile'd, not traced buffer by buffer). Without down_proj (q/k/v/o/gate/up): two
    float32 T x I. Measured (strict, three fresh processes of two steps each, beside two other
    helpers' runs on two cores; draws over the plan without this, float32 T x I):
    in_sample_round30_planner32b, qwen3 h128 I 512 1 x 256 fused (T x I 0.5 MiB, I/h 4): all
    seven +1.61/+1.52/+1.69, k/gate/up/down +1.70/+1.51/+1.51, accumulation 1 +1.61/-0.22/+0.78
    (8 steps x 3 processes: +1.61, +1.78 in 2 of 24 steps), 2 layers with the top one adapted
    +0.78/+0.69/+1.78 (8 x 3: +0.69..+0.78, +1.69 in 1 of 24 steps); qwen2 h192 I 768 (I/h 4)
    2 x 128 blockwise +1.50/+1.59/+1.59, 1 x 256 fused +1.68/+1.60/+1.68; planner27a's qwen3
    h64 I 384 (I/h 6) top +1.19 (planner31b, 8 steps x 6), I 768 (I/h 12) +0.64, qwen2 h128 I
    640 (I/h 5) +1.48. The top is 0.1 T x I + 6.3 T x hidden within 0.1 T x I in every shape,
    not a T x I count: six T x hidden puts -10.0..-10.8% at -0.6..-1.5%, planner27a's -8.2/
    -7.7/-4.8% at -0.8/-0.4/-0.5%. No down_proj: +2.02..+2.08 (qwen2, 3 of 3), qwen3 h128
    +0.28/+0.28/+1.14 and +2.08 at step 1 of one 8-step process, +2.19 at h64 (planner31b):
    two T x I (-15.6/-8.3/-16.5% -> -0.6/+6.2/-0.2%: qwen3 h128's commoner level is +0.28, the
    trade). A chunked loss meets the same state (planner33b, in_sample_round32_planner33b: the
    two families above and a qwen3 h256 I 1,024 1 x 384 fused one, only the chunk changed, two
    runs of three processes each, beside other helpers' runs): all seven, each twin's top over
    its six draws, qwen3 h128 chunk 64/128/256 (one chunk)/512 +1.69/+1.78/+1.52/+1.69 (29 of
    60 draws of the ten all-seven twins at +1.2 or more), qwen2 chunk 64/256/512 +1.59/+1.30/
    +1.30, h256 chunk 128/256/384 +1.80/+1.79/+1.80, q/v/gate/up/down adafactor chunk 256
    +1.45 x 3; no down_proj +2.08 (qwen3 2 of 6, qwen2 2 of 3). Neither the number of chunks
    nor one chunk against several decides it: each twin met the state in some draw and missed
    it in others (-9.0..-14.1% -> -1.8..+1.4% at their tops). The trade: runs whose draws all
    sit low, mech33b-01's second run (-0.22 x 3) +12.0% (8 steps x 3: -1.7%), planner18a's
    one-draw chunk-64 rows -0.1/-0.1/-0.4% -> +10.4/+7.2/+7.3% (8 steps x 3: the first and
    third -1.6/-1.7%), mech19b-*-qkgud-r64-adafactor-1l +8.1% (+3.9% over 8 steps). Stored rows it
    moves: mech27a-07 (accumulation 1, two steps below the state) +7.6%, mech23a-08 (3 layers,
    top adapted, r=64, +0.21/+0.21/+0.55) +5.2%. Not without an attention adapter (gate/up/down
    +0.33..+0.52, -0.25..+0.44, mech27a-02/-09 +0.00/+0.33: within 4.3%), nor bf16 (+0.54..
    +0.63, -5.9%, left open; chunked it sits higher, +1.22..+2.13 in mech33b-06/-18/-19, -16%:
    left open), nor DoRA (one twin, qwen2 all seven +1.26/+2.05/+2.05, -11.9%: left open), nor
    without recomputation (lowest_gate_up_buffers)."""
    t = w.targets
    if (not bottom or w.dt != F32 or w.dora or not t & ATTENTION
            or not {"gate_proj", "up_proj"} <= t):
        return 0
    if "down_proj" in t:
        return 6 * w.tokens * s.hidden * F32
    return 2 * w.tokens * s.intermediate * F32


def dora_mlp_backward(s: ModelShape, w: Work, bottom: bool = False) -> int:
    """Extra bytes while a recomputed DoRA MLP projection's backward runs, beyond LoRA's.
    mlx-lm's DoRALinear (mlx_lm/tuner/dora.py) returns (m / ||W + BA||) * out: its gradient forms
    the incoming gradient scaled by m / ||W + BA|| and the incoming gradient times the kept
    `out` (reduced to m's gradient), two T x out buffers beside the incoming one (one of them
    donated in float32). A DoRA gate_proj counts one fewer: the lowest layer's MLP backward
    already holds a swiglu buffer it reuses. Gate and up run side by side: the larger counts.
    Measured on the DoRA draws against their LoRA twins (in_sample_round7_dora,
    in_sample_round8_dora: DoRA less LoRA in the same shape): a recomputed DoRA up_proj's
    backward held 1.8-2.9 more T x I buffers in bf16 (T 128-512, I 768-1,024, 1-2 layers) and
    1.8-1.9 float32 ones in fp32, of which the plan counted only `out` (_dora); with this term
    the backward phase of round 7's six bf16 DoRA up and q+up draws went from -11.5..-34.3% to
    -3.5..-18.9% (their LoRA twins: -2.4..-15.0%). Not in a layer that is not recomputed:
    there the backward peak is elsewhere (mech7-*-nockpt-dora-up: +1.9% without, +11.6% with).
    Nor in a recomputed float32 upper layer of a float base adapting gate and up
    (upper_float32_dora)."""
    if not w.dora or upper_float32_dora(w, bottom):
        return 0
    fewer = 0 if w.dt != F32 else 1
    return max([(2 - fewer - (p == "gate_proj")) * w.tokens * s.projection(p)[1] * w.dt
                for p in w.targets & MLP], default=0)


def upper_float32_dora(w: Work, bottom: bool) -> bool:
    """A recomputed float32 DoRA MLP above the lowest adapted layer, float base, gate_proj and
    up_proj both adapted: dora_mlp_backward's float32 T x I is not held there (planner26b,
    heldout24-00's kind, over). Measured, not traced to the op: per update.evaluate_gradients
    block (strict, active memory and peak around each mx.eval), the top layer's MLP block of
    the DoRA twins held 2.3-3.2 MiB more than their LoRA twins' where the plan's DoRA-less-LoRA
    is 3.4-3.8 MiB (qwen3 h256 8 x 4 heads and h128 4 x 2 heads, I 1,024; 2 layers,
    k/v/o/gate/up/down, r=64, 2 x 128, accumulation 2, sgd; 2-3 steps each): 0.6-1.0 float32
    T x I too many. The worst of three processes mostly agrees (in_sample_round24_planner26b,
    DoRA less LoRA, measured against planned): mech26b-01/-02 (I 768) 1.20 T x I over,
    mech26b-09/-10 (h128 I 512) 1.08, mech26b-13/-14 (I 1,024) 2.5 (0.6 by their commonest
    draws), mech26b-15/-16 (h128 I 1,024) 0.0 (0.7-1.1 by the other draws: races of about
    1 MiB). Without it the DoRA rows were +1.4% (I 768), +5.7% (I 1,024), +1.1% (h128 I 512),
    +0.5% (h128 I 1,024), +9.6% (r=8, h128); with it -1.4, +2.5, -2.4, -3.7, +4.5%,
    by their LoRA twins (-2.2, -2.6, -3.0, +0.5%). Predicted before measuring, new shapes:
    mech26b-17 (qwen2 h192 6 x 2 heads, I 896, q/gate/up/down r=16, 1 x 256, adamw) -0.8%
    (+3.7% without), mech26b-18 (qwen3 h256, 3 layers, gate/up r=32, 2 x 96, accumulation 1)
    +0.9% (+4.0% without). Narrow (only what the twins measured): a
    float base with gate and up adapted; the one stored row a wider rule would move, the 4-bit
    up/down in_sample_round8_dora's mech8-qwen2-h256-*-q4-f32-*-ckpt-dora-updown, stays +0.9%
    (-3.0% without its buffer). The lowest layer keeps it (dora_mlp_backward's 1-layer
    rows); bf16 keeps its two (not measured here)."""
    return (w.dt == F32 and not bottom and not w.quantized
            and {"gate_proj", "up_proj"} <= w.targets)
