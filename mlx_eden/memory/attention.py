"""Bytes of a decoder layer's attention beyond what the layer keeps: the fused (MLX's unfused
SDPA under a gradient) and the blockwise (backends/mlx/attention.py) attention, in the forward
pass of a checkpointed layer and in the backward pass. Split from activations.py (what each
layer keeps) so that each module prices one part of a step."""

from __future__ import annotations

from .activations import ATTENTION, F32, MLP, QKV, Work, attention_grads
from .shapes import ModelShape


def attention_backward_transient(s: ModelShape, w: Work, checkpoint: bool = False,
                                 bottom: bool = False) -> int:
    """Extra bytes while a layer's attention backward runs: the gradients of the probabilities
    and of the scores (B x heads x L x L each, in the compute dtype: MLX's unfused attention
    and its vjp stay in the inputs' dtype; measured standalone, value_and_grad of
    mx.fast.scaled_dot_product_attention in strict mode: bf16 forward + backward peaks at 3
    bf16 squares, the kept probabilities and these two; in float32 the scores' gradient takes
    the probabilities' gradient's buffer, donated, unless the layer was just recomputed) and
    three T x hidden float32 buffers (the output's gradient, the query's, and their sum). A
    just recomputed layer with a q, k or v adapter, or an upper one with no attention adapter
    (upper_without_attention_adapters): recomputed_fullest (round 10; before, one square in
    bfloat16 and two in float32, fitted on round 1's mech-d/e/f-* draws).
    A bf16 upper layer, not recomputed, adapting no MLP projection: upper_bf16_fullest (round
    21). In the lowest adapted layer without a q/k adapter no square gradient is formed
    (attention_grads): only the output's gradient. Blockwise attention (train.attention): see
    blockwise_backward_bytes."""
    if w.attn_block and bottom and not w.targets & QKV:
        # Nothing below the attention is trained: its custom VJP never runs (the output's
        # gradient only, as in the fused rule below).
        return w.tokens * s.hidden * F32
    if w.attn_block:
        # A recomputed lowest layer holds 3 T x hidden float32 less than its kept attention
        # part at this moment. Measured, not traced: the round-5 in-sample 1-layer checkpointed
        # draws (mech5-*-1l-*-ckpt-*, bf16 and fp32, T 1,024-2,048) were 2.8-6.0 MiB (3 such
        # buffers) over with all of it; not so without checkpointing (mech5-qwen3-*-nockpt-qkvo).
        less = 3 * w.tokens * s.hidden * F32 if checkpoint and bottom else 0
        return blockwise_backward_bytes(s, w) - less
    if not attention_grads(w.targets, bottom)[0]:
        return w.tokens * s.hidden * F32
    square = w.batch * s.heads * w.seq * w.seq * w.dt
    # undonated_square: float32 holding the softmax's gradient beside P·dP (round 18).
    raced = (unmasked_race_squares(s, w, checkpoint)
             + undonated_square(s, w, checkpoint, bottom)) * square
    if checkpoint and (w.targets & QKV or upper_without_attention_adapters(w, bottom)):
        return raced + recomputed_fullest(s, w, square) + recomputed_output_gradient(s, w, bottom)
    if upper_bf16_without_mlp_adapters(w, checkpoint, bottom):
        return upper_bf16_fullest(s, w, square)
    squares = (1 if (w.dt == F32) != checkpoint else 2)
    return raced + squares * square + 3 * w.tokens * s.hidden * F32


def recomputed_fullest(s: ModelShape, w: Work, square: int) -> int:
    """A recomputed (checkpointed) layer's fused attention backward with a q, k or v adapter,
    in either dtype: its fullest moment is the softmax's gradient, two squares beside the kept
    probabilities (the probabilities' gradient and the scores'), before the 3 T x hidden
    float32 buffers of dq, dk and the input's gradient exist (by then one square is freed).
    Measured, not traced (benchmarks/planner_heldout.py, in_sample_round10_planner11a, mech11a-*,
    causal, 2 x 1, 4 x 2, 6 x 6 and 8 x 8 heads of size 16-32, 256-640 tokens): the bf16
    backward held 0.25-0.81 square more than the old count (one square and the 3 buffers: that
    count is 1 - 6 x head size / L squares short, 0.81 at size 16 and 512 tokens, 0.4 at 32 and
    320, as measured; round 8's bf16 mech8-*-ckpt-* 0.5-0.87), its float32 twins 0.05-0.34
    less than theirs (two squares and the 3 buffers). Left out: one 4 x 2-head bf16 shape at
    640 tokens held 1.7 squares in 4 of 4 runs (34% over now; 6 x 6 heads at 640 fit), yet 2
    with the causal mask's `where` left out (12.1 MiB, an ablation): an op order, not a buffer
    count; float32 at 256 tokens 13% over. Not counted with o_proj alone (no q/k/v adapter):
    round 8's 4 x 4 o_proj draw was 13% over already, 31% with it (4 x 2 heads here: 9%
    under)."""
    return max(2 * square, square + 3 * w.tokens * s.hidden * F32)


def recomputed_output_gradient(s: ModelShape, w: Work, bottom: bool) -> int:
    """The layer output's gradient (T x hidden float32, from the loss block or the layer above),
    alive beside recomputed_fullest's moment in a float32 checkpointed fused layer: that count
    has the kept probabilities and two squares (or one and dq, dk and the input's gradient),
    and the layer inputs (planner.estimate's ckpt_inputs), not this. Traced (strict, step 1-3,
    active memory around each mx.eval of update.evaluate_gradients,
    in_sample_round22_planner23b): after the loss block the run holds the layer inputs and one
    T x hidden float32 more in every microbatch of every step: mech23b-01 (qwen3 h128 4 x 2
    heads, 2 layers, q/k/v/o/down, 2 x 384) 1.497 MiB against 1.125, mech23b-02 (q/k/v/o)
    1.495, mech23b-07 (2 x 256) 0.994 against 0.750, mech23b-12 (h192 6 x 2 heads, I 640)
    2.247 against 1.688. Not counted in bfloat16 (not traced there: recomputed_fullest's bf16
    rows fit without it), for the blockwise attention, or in the lowest adapted layer (round
    1-3's one-layer mech-*-bottom-ckpt rows, 4-10% over already, went 2-3 points further over).
    Whole steps (three fresh processes each, the highest): mech23b-01 -5.7% -> -4.0%, 3 layers
    -4.2 -> -2.5%, qwen2 -5.7 -> -3.9%, h192 -4.0 -> -2.3%; heldout22-10 (information, not
    fitted) -6.3 -> -4.8%."""
    return w.tokens * s.hidden * F32 if w.dt == F32 and not w.attn_block and not bottom else 0


def upper_bf16_without_mlp_adapters(w: Work, checkpoint: bool, bottom: bool) -> bool:
    """Does upper_bf16_fullest price this layer's attention backward? bfloat16 (or float16),
    the fused attention, not checkpointed, an upper layer (one with adapted layers below it),
    no MLP projection adapted: then the layer's MLP block has no gradient to evaluate, and
    update.evaluate_gradients' first evaluation of the layer runs its MLP's backward on into
    its attention's. Not with an MLP adapter (traced on mech22d-06, q/v/up: the MLP block is
    evaluated on its own first, and the attention block then peaked at 7.91 MiB, under both
    counts; the plan +3.9% there, from the MLP's moment, which this does not touch), nor in
    float32 (undonated_square's rows) or checkpointed (recomputed_fullest)."""
    return (w.dt != F32 and not checkpoint and not bottom and not w.attn_block
            and not w.targets & MLP)


def upper_bf16_fullest(s: ModelShape, w: Work, square: int) -> int:
    """The attention backward's fullest moment in upper_bf16_without_mlp_adapters' layers:
    the probabilities' and the scores' gradients, two squares beside the kept probabilities,
    before the 3 T x hidden float32 buffers (dq, dk, the input's gradient) exist, as in a
    recomputed layer (recomputed_fullest: by then one square is freed); and the lowest layer's
    swiglu end, which holds our SwiGLU's 3 T x I buffers, not swiglu_kept's 4, until its own MLP
    backward (activations.swiglu_ends: fused bf16 2+ layers price both ends at the loss only;
    the top layer's end is in the MLP part freed before this moment). Traced (strict, step 2,
    each mx.eval of update.evaluate_gradients alone with MLX's peak reset before it,
    in_sample_round21_planner22d's mech22d-01: qwen2 h128 4 x 2 heads, 2 layers, I 384, bf16,
    fused, q/v r=8, 2 x 256): the top layer's one evaluation peaked 0.746 MiB above the 7.584
    active before it; at 1 x 512 (the same T, each square twice the size) 2.746 above 10.006.
    The peak grew by the two squares' growth alone (2.0 MiB), and both equal what was active
    less the top layer's MLP part (3 bf16 T x I) and the loss's kept logits, plus two squares,
    to 0.1 MiB: no T x hidden buffer beside them. q/k/v/o (mech22d-02) 9.202 MiB against
    9.119 by that count. The count before (two squares and the 3 buffers, with the lowest end
    at 4) was 1.2-1.3 MiB (3 T x hidden float32 + 1 bf16 T x I) over both. Measured (three
    fresh processes each, the highest): the backward of the twins whose attention decides
    (q/v, k, v, q/k/v/o, o, 3 layers, qwen3, 1 x 512, 4 KV heads, packed, V 4,096, and the
    calibration tiny model at 1 x 512) +8.9..+18.2% before, -1.1..+4.2% now (o alone +3.8%,
    packed +3.8%, the tiny model +4.2%); where the MLP's moment is larger (I 10 x hidden, the
    tiny model at 2 x 256) nothing moves. in_sample_round19_planner20c's q/v, q/k/v/o and I 384
    twins +16.3/+9.2/+16.0% -> +4.0/-1.6/+3.8%; round 12's lone v at 1 x 512 (mech13v-*-h512-
    8x1-2l-*-nockpt-v) +15.7 -> +4.3%. Lower: round 8's 8 x 8-head packed q/k/v/o at 1 x 512
    (head size 16) -11.5 -> -15.8%, already under (its causal twin +3.9 -> -1.0%)."""
    return recomputed_fullest(s, w, square) - w.tokens * s.intermediate * w.dt


def upper_without_attention_adapters(w: Work, bottom: bool) -> bool:
    """Does a recomputed upper layer adapting no attention projection (MLP adapters only) reach
    recomputed_fullest's moment too? Yes: the input's gradient needs dq, dk and dv whatever is
    adapted, so the softmax's gradient is formed as with a q/k/v adapter. Measured, not traced
    (benchmarks/planner_heldout.py, in_sample_round12_sweep's sweep13-17 and its twins
    in_sample_round12_planner13s mech13s-qwen2-h192-6x1-*-i384-v512-*-ckpt-*, fused, causal,
    strict): bf16 gate+down at 2 x 512 24.9 MiB against 21.9 planned with one square and the 3
    buffers (-12.0%); the same with a q_proj adapter added measured 25.7 (planned -0.2% by
    recomputed_fullest); with this: 2 x 512 -0.1%, down_proj alone -15.1% -> +0.1%, 6 x 6 heads
    -11.3% -> +0.3%, 2 layers -12.7% -> +0.5%, 1 x 512 -10.4% -> +0.3%, float32 +2.9% ->
    -1.7%; 2 x 384 stays -5.2% (the MLP's moment decides it in the plan). Stored in-sample rows
    it moves: round 1's mech-g-f32-up +5.8% -> +0.8%, mech-e-bf16-up/gate/down within 3.1%,
    in-sample-05 +1.5% -> -3.7%; no group's worst peak changes. o_proj (no q/k/v
    adapter) stays out: round 8's 4 x 4-head o_proj draw was 31% over with it
    (recomputed_fullest's docstring)."""
    return not bottom and not w.targets & ATTENTION


RACED_SQUARE = 2_000_000  # score entries (B x heads x L x L) from which the square is counted


def unmasked_race_squares(s: ModelShape, w: Work, checkpoint: bool) -> int:
    """The one square round 8's bool-mask term (masked_grad_squares) priced that the additive
    mask did not remove: float32, not checkpointed, KV heads = heads, packed. Measured, not
    traced (strict, fresh processes, additive mask): mech8 8 x 8 heads at 1 x 512 41.7 MiB
    (bool 42.2), at 1 x 768 65.6 (bool 66.2), 6 x 6 at 1 x 1,024 158.9 (bool 181.7), mech11m
    8 x 8 at 1 x 640 66.7 (bool 79.3): one square above the plan without it, 2.1-6.3 M score
    entries; 6 x 6 at 2 x 384 (1.8 M) had none (45.6 twice). Not the mask's: round 8's causal
    8 x 8 run at 1 x 512 was 16.7% under too (a donated buffer missed, as we guess),
    while its 6 x 6 causal run at 1 x 1,024 was not (+2.0%): priced for packed rows only, where
    every measured run from RACED_SQUARE entries held it; causal left open."""
    if checkpoint or w.dt != F32 or not (w.packed and s.heads == s.kv_heads):
        return 0
    return int(w.batch * s.heads * w.seq * w.seq >= RACED_SQUARE)


UNDONATED_FROM = 384  # row length from which undonated_square counts its square


def undonated_square(s: ModelShape, w: Work, checkpoint: bool, bottom: bool = False) -> int:
    """One more B x heads x L x L square in a float32 not-checkpointed fused backward: in an
    upper layer whatever it adapts, in the lowest one with o_proj and q_proj or k_proj adapted
    (lowest_undonated): the softmax's gradient, P·dP - P·sum(P·dP), held beside P·dP and the
    kept probabilities P, as in bfloat16 (the count above assumes float32 donates P·dP's buffer
    to it). Traced standalone (value_and_grad of
    mx.fast.scaled_dot_product_attention, float32, strict, 2 x 6 heads x 512, head size 32):
    with respect to q, k and v 3.13-3.25 squares above the inputs in every call (causal, no
    mask or additive mask, 6 or 2 KV heads); q alone 2.11 (P's last reader is the softmax's
    gradient, so P is donated); v alone 1.15. Whole steps (benchmarks/planner_heldout.py,
    in_sample_round18_planner19a, mech19a-*, qwen3 h192 6 x 2 heads, 2 layers, q/k/v/o r=4,
    2 x 512 causal, unchunked, sgd, accumulation 2; three fresh processes each): the plan
    was 0.79-1.0 of a square under in every draw of every twin with q/k and o adapted:
    measured 71.4 MiB (planned 60.2 -> 72.2 with it), Qwen2 67.7 (+3.6%), 6 KV heads 74.1
    (+2.1%), 2 x 768 140.5 (+1.7%), 1 x 1,024 120.4 (+1.3%), hidden 96 62.1 (+2.6%), hidden
    384 at accumulation 1 90.2 (+0.1%), one layer 46.2 (-0.2%), packed under GQA 69.4
    (+3.3%), 2 x 384 44.8 (-10.7% -> +2.7%), 1 x 512 37.5 (-13.8% -> +2.2%); round 8's
    mech8-qwen2-h128-8x8-2l-f32-1x512-nockpt-qkvo -16.7% -> +2.2%. Counted from rows of
    UNDONATED_FROM tokens, by row length rather than score entries: 1 x 512 holds it, 4 x 256
    (the same 1.6 M entries) does not, nor 2 x 256 (both planned at the loss, +3.4% and +3.1%
    with it). The packed KV heads = heads rows are unmasked_race_squares' (not counted twice).
    Other target sets (planner22c): an upper layer forms dq, dk and dv whatever it adapts (its
    input's gradient needs them), so dV = P^T·dO reads P beside the softmax's gradient, and
    whether P·sum(P·dP) gets P's buffer is a race (MLX's CPU scheduler, as worst_of says).
    Traced per update.evaluate_gradients block (strict, active memory and peak around each
    mx.eval, 3-4 steps of one process): the block that runs an upper layer's softmax gradient
    held one square more in its high state than in its lean one in every target set, the
    other blocks the same: mech19a-*-2x512-gud (no attention adapter: the lowest layer's MLP
    block) 41.8 / 53.9 MiB, -vo (the lowest layer's attention block) 53.8 / 65.8, -qkvo (its
    own block) 59.3 / 69.6-70.6, mech22c-03-*-o 22.3 / 27.8, and round 12's mech13v-qwen2-
    h256-8x8-2l-f32-1x768-nockpt-v (stored 74.7 MiB, twice lean) 74.7 / 92.7 in 1 step of 4.
    Priced as the high state. Whole steps (in_sample_round21_planner22c, mech22c-*, qwen3 h192 6
    x 2 heads, 2 layers, r=4, 1 x 512, accumulation 1; three fresh processes each): gate/up/
    down -15.8% -> +4.0%, v -13.2% -> +4.2%, o -15.3% -> +6.0%, v/o -11.9% -> +5.3%, gate, up,
    down, q/v -17.2/-20.7/-19.1/-11.7% -> +4.2/+1.2/+1.2/+5.3%, 1 x 384 -6.1% -> +4.5%, 1 x 768
    -21.2% -> +3.2%, 1 x 1,024 -23.8% -> +2.6%, 6 KV heads -15.0% -> +4.0%; qwen2 h128 4 x 2
    heads: gate/up/down -4.4% -> +1.2%, v/o -3.6% -> +6.6%, v at 1 x 768 -14.7% -> +4.3%; not
    moved: 1 x 256, one layer, checkpointed, bf16. The plan stays 1-6% over the high state where
    the layer's own block frees its kept part first (v/o, o, q/v: 3-6 T x hidden float32, not
    traced buffer by buffer). Still lean in every measured draw: mech13v's v at 1 x 768 (+27.0%
    with it; 74.7 MiB in 5 of 5 processes, mech22c-21-again-* three of them) and 1 x 1,024
    (+28.7%), round 8's q/v/down at 1 x 1,024 (6 x 6 heads, 3 layers, +19.5%): Qwen2 with KV
    heads = heads and 4.7-8.4 M score entries, yet Qwen3 6 x 6 heads at 1 x 512 and 6 x 2 at 1 x
    1,024 hold it: not separated."""
    if checkpoint or w.dt != F32 or (w.packed and s.heads == s.kv_heads):
        return 0  # the packed KV heads = heads rows: unmasked_race_squares
    if bottom and not lowest_undonated(w):
        return 0
    return int(w.seq >= UNDONATED_FROM)


def lowest_undonated(w: Work) -> bool:
    """Does the lowest adapted layer hold undonated_square's square? Only with o_proj and q_proj
    or k_proj adapted (planner19a's rows); an upper layer holds it whatever is adapted
    (planner22c)."""
    return "o_proj" in w.targets and bool(w.targets & {"q_proj", "k_proj"})


def mask_bytes(w: Work) -> int:
    """The fused attention's mask at a layer's softmax. Packed: model.attention_mask's additive
    mask, B x 1 x L x L in the compute dtype (one array for every layer). Causal: the L x L
    bool mask MLX's unfused SDPA builds in each layer.

    Until round 10 a packed row's mask was bool too, applied as `where(mask, scores, min)`;
    without GQA the gradient of that `where` was one more B x heads x L x L square in the
    backward whenever MLX did not donate it a buffer (a race by size: 14 of 17 runs at 1.6-6.3 M
    score entries, 2 of 16 at 0.5-1.2 M; round 8's in_sample_round8_fused). The additive mask
    (`scores + mask`) passes the gradient through, and nothing in the backward keeps it
    (checkpointed, the recomputation's argument does: checkpointed_mask_kept).
    Measured (benchmarks/packed_mask_ab.py --memory, in_sample_round10_planner11m, strict, fresh
    processes, bool against additive): 8 x 8 heads at 1 x 640, fp32 checkpointed 61.4 -> 50.1
    MiB, not checkpointed 79.3 -> 66.7, bf16 checkpointed 31.6 -> 26.0; 6 x 6 heads at 2 x 384
    fp32 49.4/49.8 -> 45.6 twice; bf16 4 x 4 heads at 1 x 1,024 40.4 -> 33.4 (each one square
    less the mask's growth), two runs of each alike; with GQA (8 x 2) 48.7 -> 48.8. Left in
    float32 not checkpointed: unmasked_race_squares."""
    return w.batch * w.seq * w.seq * w.dt if w.packed else w.seq * w.seq


def checkpointed_mask_kept(w: Work, checkpoint: bool) -> int:
    """Bytes of a packed row's additive mask (mask_bytes: B x 1 x L x L in the compute dtype,
    one array for every layer) that checkpointing keeps from the forward pass through the
    backward: checkpoint.checkpointed_layer passes the mask to each recomputed layer as an
    explicit argument, so every layer's saved inputs hold it until the lowest adapted layer is
    recomputed: held at the forward's loss, the loss's backward and an upper layer's backward,
    not at the lowest layer's MLP backward (planner.estimate takes it off the top layer's moment
    when that layer is the lowest). Not checkpointed, nothing keeps it (mask_bytes). The causal
    mask is a string (MLX builds its bool mask inside each layer) and the blockwise attention's
    mask is the B x L segment ids: neither is priced. Traced (strict, mx.get_active_memory after the
    forward's mx.eval and after each block of update.evaluate_gradients, steps 2-3;
    in_sample_round26_planner29b's mech29b-01, qwen3 h128, 4 x 4 heads, 4 layers, I 640, 4-bit
    float32, LoRA q/v/o/gate/down, packed 1 x 384): the forward ended 7.508 MiB above the step's
    start against 6.938 planned (T x V exponentials and 5 layer inputs), +0.570 MiB, the mask's
    0.5625 (384 x 384 float32); the same +0.57 at r=4, r=16 and r=32 and with AdamW (so not the
    adapter's 0.5625 MiB), and +0.144 MiB at 1 x 192 (its mask: 0.141). Packed less unpacked,
    after each block: +0.562 after an upper attention block, +0.422 after an upper MLP block (less
    the causal layer's L x L bool mask), -0.141 after the lowest one's (the mask gone); bf16
    +0.281; the top layer alone adapted +0.562 at the forward, -0.14 after its MLP block.
    heldout26-07 (1 x 512, read, not fitted) was 1,069,332 B under on the forward: its mask is
    1,048,576. Measured (the highest of three processes): in_sample_round26_planner29b worst
    9.8% -> 6.1%, 13 -> 14 of 15 within 5% (mech29b-01 -4.8% -> -1.2%, its 2-layer twin -4.0% ->
    -0.1%); predicted before measuring, bf16 -0.8%, top layer alone -0.1%, qwen2 1 x 512 -0.1%."""
    if not checkpoint or not w.packed or w.attn_block:
        return 0
    return mask_bytes(w)


def blockwise_backward_bytes(s: ModelShape, w: Work) -> int:
    """Bytes the blockwise attention's backward (backends/mlx/attention._attend_vjp) holds at
    its fullest moment, the last query block, beyond what the layer keeps. All in the compute
    dtype (q, k and v are in it, so the scores, probabilities and gradients are too). Each
    block waits for the previous block's dq, dk and dv (`mx.depends`), so one block's squares
    are alive at a time: its probabilities and its scores' gradient (B x heads x rows x i1,
    causal: keys up to its last query i1). Beside them the earlier blocks' dq pieces, which only
    the final concatenation reads (the rows before the last block, at the query width), and
    the dk and dv accumulators with their next values (3.5 x B x L x KV width, fitted).
    Before round 6 no block waited for dq: MLX ran every dq matmul last, so every earlier
    block's ds was alive at the last block (1 x 2,048 tokens, 8 heads, fp32: 83.6 MiB in a
    standalone mx.vjp, 27.0 MiB with the wait, 3.4 last-block squares at 512-2,048 tokens).
    Measured (whole steps, strict mode, benchmarks/planner_heldout.py: the round-6 in-sample
    draws mech6-* and round 5's mech5-* re-measured with the wait; 2-12 blocks, B 1-3, 3-16
    heads, 1-8 KV heads including KV = heads, head size 32-64, bf16 and fp32, checkpointed or
    not): a least-squares fit over the 18 upper-layer draws gave 2.1 squares and 4.4 KV-width
    buffers beside the dq pieces; with these counts the attention-bound ones came within 6% of
    their backward phase (the round-5 count, with every earlier block: up to +86%).
    Round 8 checked it on 8 new shapes (in_sample_round8_blockwise: not checkpointed, mostly
    float32 with KV heads = heads, where dO·Vᵀ does not wait for the chain): backward -4.9% to
    +7.1%, no common sign, so unchanged; making dO wait too was measured and not shipped
    (attention._backward's docstring).
    Refitted after the first-block fix (planner15f; attention._backward(wait_first=True): till
    then mx.compile kept each layer's first-block scores from the forward to the backward, one B
    x heads x 128 x 128 square a layer, in the rows the fit above was made on): the same fit over
    the 36 upper-layer rows re-measured on the fix (in_sample_blockwise_ckpt's 25, round 6's 7,
    round 8 blockwise's 4, checkpointed or not, strict; those whose top-layer attention decides
    the plan) gave 2.0 squares and 3.58 KV-width buffers: 3.5 now (4 before). Its effect is
    small: round 8 blockwise's median 4.1 -> 2.8%, mech5-qwen2-h256-4x4-2l-f32-2x512-ckpt-qv
    +6.3 -> +4.3%, KV heads = heads bf16 3 x 384 -2.0 -> -3.6%; no group's worst peak moved by
    it.
    """
    entries = [(i1 - i0) * i1 for i0, i1 in _blocks(w.seq, w.attn_block)]
    squares = 2 * w.batch * s.heads * max(entries) * w.dt
    last = w.batch * (w.seq - _blocks(w.seq, w.attn_block)[-1][0])  # the last block's rows
    dq = (w.tokens - last) * s.heads * s.head_dim * w.dt
    return squares + dq + 7 * w.tokens * s.kv_heads * s.head_dim * w.dt // 2


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    """backends/mlx/attention._blocks: the query blocks (start, end) of a length-n row."""
    return [(i0, min(n, i0 + block)) for i0 in range(0, n, block)]


def attention_forward_peak(s: ModelShape, w: Work) -> int:
    """Bytes alive at a layer's softmax in the forward pass when the layer keeps nothing
    (checkpointing): its normed input, the scaled queries, keys and values, the mask, RoPE's
    tables, and the scores next to the probabilities (B x heads x L x L each). In either dtype
    the probabilities take the scores' buffer (donated): the forward phase of the in-sample
    mechanism draws mech-qonly-a, mech-konly and mech-q-bottom-ckpt (benchmarks/
    planner_heldout.py, checkpointed float32) was 34-62% over with both squares, 0-5% with one;
    in bfloat16 (round 8's mech8-*-bf16-*-ckpt-*, attention-bound) 22-67% over with two, -8% to
    +2% with one, and the round-1 bf16 mech-b/e/f/g forwards 0.7 points lower.
    Blockwise: the same for one query block's squares, two in either dtype since the mask is
    an additive bias (attention.py: the biased scores beside the scores; round 5's in-sample
    mech5-qwen2-h256-8x2-1l-f32-2x512-ckpt-q forward was 25% under with one, +2.5% with two)."""
    kv = s.kv_heads * s.head_dim
    T = w.tokens
    if w.attn_block:
        q = s.heads * s.head_dim
        return (T * s.hidden * w.dt + T * (q + 2 * kv) * w.dt
                + 2 * w.batch * s.heads * w.score_rows * w.seq * w.dt
                + 2 * w.seq * s.head_dim * F32)
    return (T * s.hidden * w.dt + T * kv * w.dt
            + w.batch * s.heads * w.seq * w.seq * w.dt
            + mask_bytes(w) + 2 * w.seq * s.head_dim * F32)
