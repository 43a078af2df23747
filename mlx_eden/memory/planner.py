"""Will a recipe fit? Bytes per component from the exact shapes, the peak, and the verdict.

The peak is what the run needs at its fullest moment: everything resident (base weights,
adapters, optimizer state, accumulated gradients) plus the largest of what each phase adds:

    loss            saved activations + the loss's logits (and, chunked, their gradient:
                    the chunked loss computes it in the forward pass)
    backward        each layer's activations (recomputed one layer at a time with
                    checkpointing) + that layer's gradient buffers
    backward end    the gradients + the lowest layer's activations
    update          the gradients + one group of the streamed optimizer update

This is the memory MLX needs when it runs no further ahead of the computation than the budget
lets it (the trainer sets MLX's memory limit to the budget: see backends/mlx/memory.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..dtypes import resolve_dtype
from ..recipe import Recipe
from ..registry import UPDATE_GROUP_BYTES, optimizer_spec
from .activations import (
    ATTENTION,
    ATTENTION_BLOCK,
    F32,
    Work,
    backward_ends16,
    dora_first_norms,
    dora_forward_transient,
    dora_gate_up_weights,
    dora_weights_kept,
    gate_swiglu_forward,
    layer_parts,
    layer_saved,
    mlp_forward_peak,
    swiglu_between,
    swiglu_ends,
    swiglu_forward_extra,
    swiglu_forward_held,
)
from .attention import (
    attention_backward_transient,
    attention_forward_peak,
    checkpointed_mask_kept,
)
from .devices import Device
from .load import DTYPE_BYTES, load_peak, weight_bytes
from .loftq import loftq_spike
from .loss import loss_backward_transient, loss_forward_transient, loss_peak, loss_saved
from .mlp_backward import (
    lowest_gate_up_down16,
    lowest_recomputed_high,
    lowest_recomputed_less,
    mlp_backward_transient,
)
from .shapes import ModelShape

ALL_REDUCE_GROUP_BYTES = 32 << 20  # mlx.nn.average_gradients' all_reduce_size default
COMPONENTS = ("base weights", "adapters", "optimizer state", "gradients", "saved activations",
              "logits and loss", "layer transient", "update transient", "headroom")


@dataclass(frozen=True)
class Settings:
    """The recipe values that decide memory."""

    batch: int
    seq: int
    grad_accumulation: int
    dtype: str
    quant_bits: int | None
    quant_group: int
    rank: int
    targets: tuple[str, ...]
    adapted_layers: int
    dora: bool
    optimizer: str
    checkpoint: bool
    loss_chunk: int
    packed: bool
    ranks: int = 1  # data parallel: processes (torchrun / mlx.launch), each with `batch` rows
    loftq: bool = False  # adapter.init: loftq (a float layer at a time while loading)
    attn_block: int = 0  # train.attention: blockwise (its query block), 0 = fused

    @classmethod
    def from_recipe(cls, recipe: Recipe, shape: ModelShape, metal: bool = False,
                    ranks: int = 1) -> Settings:
        """`metal`: the device runs bf16 natively (decides what model.dtype: auto means);
        `ranks`: data-parallel processes (the plan is per rank)."""
        a, t, q = recipe.adapter, recipe.train, recipe.model.quantize
        dtype, _ = resolve_dtype(recipe.model.dtype, fast_half=metal,
                                 config={"torch_dtype": shape.dtype})
        layers = shape.layers if a.layers == -1 else min(a.layers, shape.layers)
        bits = shape.quant_bits or q.bits
        # DPO/KTO (objectives.py): a DPO micro-batch is batch_size pairs, so 2 x batch_size rows
        # through forward and backward; KTO's KL rows are a no-gradient forward of batch_size
        # rows, below the training pass's peak, as is the reference pass before step 1. Their
        # log-probabilities take the full logits (no loss chunking) and rows are never packed.
        preference = t.objective != "sft"
        rows = t.batch_size * (2 if t.objective == "dpo" else 1)
        return cls(batch=rows, seq=recipe.data.max_seq_length,
                   grad_accumulation=t.grad_accumulation, dtype=dtype,
                   quant_bits=bits, quant_group=shape.quant_group or q.group_size,
                   rank=a.rank, targets=tuple(a.target_names), adapted_layers=layers,
                   dora=a.type == "dora", optimizer=t.optimizer, checkpoint=t.grad_checkpoint,
                   loss_chunk=0 if preference else t.loss_chunk,
                   packed=recipe.data.packing and not preference, ranks=ranks,
                   loftq=a.init == "loftq",
                   attn_block=ATTENTION_BLOCK if t.attention == "blockwise" and not preference
                   else 0)  # DPO/KTO (objectives.py) take the fused attention

    @property
    def dt(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def work(self) -> Work:
        return Work(self.batch, self.seq, self.dt, self.rank, frozenset(self.targets),
                    self.packed, self.dora, bool(self.quant_bits), self.attn_block)


# --------------------------------------------------------------------------- static sizes


# The order tree_flatten gives the trainable tensors (mlx-lm's Qwen2/Qwen3 modules set q, k, v,
# o, then gate, down, up; LoRALinear sets lora_a, lora_b; DoRALinear.set_linear sets m before
# them: m, lora_a, lora_b): the order update.global_norm squares them in (see norm_squares).
FLATTEN_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj")


def adapter_shapes(shape: ModelShape, s: Settings) -> list[tuple[int, ...]]:
    """Every trainable tensor, layer by layer in tree_flatten's order (FLATTEN_ORDER): DoRA's
    magnitude (out,), lora_a (in, r), lora_b (r, out)."""
    out = []
    for p in FLATTEN_ORDER:
        if p in s.targets:
            i, o = shape.projection(p)
            out += ([(o,)] if s.dora else []) + [(i, s.rank), (s.rank, o)]
    return out * s.adapted_layers


# The streamed update's compiled apply replaces parameters and moments in place (their old
# arrays are referenced only by its graph once state.update/model.update ran): its transient is
# the tensors in flight, not a copy of the whole group. Measured in strict mode on
# in_sample_round11_planner12u (qwen3 h128, r=64 on all seven projections, 2 layers, 42 tensors,
# largest 114,688 B): adamw's apply alone held +344,084 B = 3 x the largest tensor (its new value
# and moments; the same with MLX_BFS_MAX_WIDTH 4, 20 or 60), sgd's +28 B, global_norm's squares
# 1.3-4.8 x the largest (run to run); the update phase 3.0-8.6 x the largest (0.24-0.70 x the
# adapter). Counted as the whole adapter the update was 7-19% over. The 20 largest tensors
# bound every in-sample row; 8 put calibration_in_sample's small-b1-s512-r64 and tiny-q4 rows
# 6-13% under. On a 32B adapter the 64 MB group (UPDATE_GROUP_BYTES) is the smaller bound.
UPDATE_TENSORS_IN_FLIGHT = 20


def update_in_flight(shapes: list[tuple[int, ...]]) -> int:
    """Float32 bytes of the largest tensors the streamed update may hold at once (see above)."""
    largest = sorted((math.prod(x) for x in shapes), reverse=True)
    return sum(largest[:UPDATE_TENSORS_IN_FLIGHT]) * F32


# Adafactor's update reduces each gradient (the row and column means of its square, the RMS
# clip) before full-size ops that read it again, and MLX evaluates a group's graph breadth
# first: every tensor of the group keeps one full-size temporary until the reductions of all of
# them are done, on top of the second temporaries of the chains in flight. Measured in strict
# mode on the streamed update alone (48 equal float32 tensors of 64 KiB): 48 + 13 tensors at the
# default MLX_BFS_MAX_WIDTH 20 (48 + 1.2 at width 1, 48 + 48 at width 100; uncompiled 48 + 1), 2 x
# each tensor up to 16 tensors; in a real step (mech13u-*-updown-q4-r64-adafactor, 12 tensors)
# 2,662,416 B over the resident, 2.0 x the adapter. Counted as 1.25 x the tensors in flight the
# update phase of in_sample_round12_planner13u's eight Adafactor rows was 3.5-10.4% under (now
# -1.0..+6.0%: the width is counted as 20 whole tensors). AdamW's and SGD's applies have no
# reduction: 3.0 and 2.0 x the largest tensor in the same step (mech13u-*-r64-adamw, -sgd).
def update_transient(name: str, shapes: list[tuple[int, ...]]) -> int:
    """Bytes the streamed optimizer update adds on top of what is resident (see above and
    UPDATE_TENSORS_IN_FLIGHT): copies of the tensors in flight, and for an optimizer that
    reduces each gradient (Adafactor) one full-size temporary of every tensor of a group plus
    the second temporaries of reducing_chains_in_flight of them; at least the gradient norm's
    squares (norm_squares: all SGD holds)."""
    spec = optimizer_spec(name)
    total = sum(math.prod(x) for x in shapes) * F32
    group = min(UPDATE_GROUP_BYTES, total)
    in_flight = min(group, update_in_flight(shapes))
    if spec.group_copies and shapes:
        n = len(shapes) if total <= group else max(1, round(len(shapes) * group / total))
        in_flight = reducing_chains_in_flight(n) * group // n  # mean-size tensors
    return max(norm_squares(shapes),
               int(spec.update_copies * in_flight + spec.group_copies * group))


# Which of a reducing update's chains (Adafactor) still hold their second full-size temporary (which
# op's was not traced) at the peak is set by MLX's tape, built breadth first MLX_BFS_MAX_WIDTH (20,
# UPDATE_TENSORS_IN_FLIGHT) nodes wide, not by the tensors' sizes: with n chains past the width, r =
# n mod width, max(width - r, width / 2 - 1 + ceil(r / 2)) of them. Measured (planner29a, strict,
# the streamed update alone, scratch in /tmp, 1-3 draws each; every point within one tensor of the
# rule, 0.3 typical): 64x64 float32 tensors, n = 21-24, 26, 28-40, 44, 48, 52, 56, 60, 64, 68, 72,
# 80 (19 at n = 21, 16 at 24, 13.1 at 28, 14.3 at 30, 15.1 at 32, 19.2 at 40, 13.3 at 48); the same
# at MLX_BFS_MAX_WIDTH 10 on n = 11..27 (the rule with width 10); n <= width: every chain (2 x the
# tensor, as noted above). Which chains is their place in the group: 24 tensors, 12 of 64 KiB then
# 12 of 16 KiB held 12 x 64 + 4 x 16 KiB, the reverse order 12 x 16 + 4 x 64 KiB (the first 16).
# Priced as that many mean-size tensors: on sweep28-10's layers (q/gate/up/down r=64 on qwen3 h64, I
# 256; 8 tensors a layer) 3, 4, 5, 7, 10 layers held 14.6, 14.5, 19.1, 15.6, 19.6 mean tensors
# against 16, 15, 20, 17, 20 priced; all seven (14 a layer) on 2, 3, 4, 6 layers 11.7, 18.7, 16.4,
# 13.8 against 13, 18, 17, 16. The 20 largest tensors put sweep28-10's update 7.5% over (scratch:
# its 24 tensors held the group + 507,920 B, the run 508,024 B); with this count the seven
# Adafactor twins past 20 tensors of in_sample_round26_planner29a (two families, bf16 and float32,
# 24-42 tensors, 3 processes each) are -0.6..+1.5%, the 20 largest +3.2..+10.4%.
def reducing_chains_in_flight(n: int) -> int:
    """Chains of a reducing optimizer update holding a second full-size temporary at the peak,
    of n tensors in one group (see above)."""
    width = UPDATE_TENSORS_IN_FLIGHT
    if n <= width:
        return n
    r = n % width
    return max(width - r, width // 2 - 1 + (r + 1) // 2)


# SGD's compiled apply (p - lr * g * factor, momentum 0) writes each new parameter into its old
# one's buffer: traced alone (strict, 42 float32 tensors of mech13u's r=64 all-seven adapter,
# in /tmp) it held +4 B. What SGD's update phase holds is update.global_norm before it: each
# gradient's square (float32, full size) until its sum is taken, a few of them at once, in
# tree_flatten's order (adapter_shapes). On all 180 stored in-sample SGD rows (benchmarks/
# README, in_sample_round19_planner20b) the update phase minus what is resident was at least
# the largest two consecutive gradients, and exactly that (+0.1 KiB) on 83 of them: 1.13
# x the largest tensor where lora_b is 8 x lora_a (mech8-*-lora-up: 36.1 KiB = 32 + 4), 2.00 x
# where two equal tensors meet across projections (mech13u-*-all-q4-r64-sgd: gate's lora_b and
# down's lora_a, 352.1 KiB). More in other draws (3 in flight traced alone at the default
# MLX_BFS_MAX_WIDTH, one pair at width 1), and on tiny adapters buffers that are not gradients
# (mech19a-*: 8-35 KiB over 3-7 KiB tensors): not priced. Counted as 0.75 x the 20 largest
# tensors the SGD update was up to 14.8% over (mech12u-*-dora-q4-bf16-*-sgd); as this pair
# -2.9..0.0% on every in-sample SGD row.
NORM_SQUARES_IN_FLIGHT = 2


def norm_squares(shapes: list[tuple[int, ...]]) -> int:
    """Float32 bytes of the gradient norm's squares alive at once (see above): the largest
    NORM_SQUARES_IN_FLIGHT consecutive tensors of `shapes`, in tree_flatten's order."""
    sizes = [math.prod(x) * F32 for x in shapes]
    k = min(NORM_SQUARES_IN_FLIGHT, len(sizes))
    return max((sum(sizes[i:i + k]) for i in range(len(sizes) - k + 1)), default=0)


def optimizer_bytes(name: str, shapes: list[tuple[int, ...]]) -> int:
    """State bytes of optimizer `name` over every trainable tensor (registry.OPTIMIZERS says
    per tensor; an unknown name is an error there, not 0 bytes)."""
    per_tensor = optimizer_spec(name).state_bytes
    return sum(per_tensor(shp) for shp in shapes)


# --------------------------------------------------------------------------- the estimate


@dataclass
class Estimate:
    params_total: int
    trainable_params: int
    sizes: dict[str, int]          # each component's own size
    components: dict[str, int]     # what is alive at the peak (sums to peak)
    phase: str                     # where the peak happens
    phases: dict[str, int]         # peak of each phase
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def peak(self) -> int:
        return sum(self.components.values())

    @property
    def needed(self) -> int:
        """The peak without the headroom: what the run allocates at its fullest moment when MLX
        never runs ahead (strict mode, what benchmarks/memory_profile.py measures). The headroom
        covers the run-ahead that the budget as MLX's memory limit allows, so the verdict
        compares `peak` with the budget."""
        return self.peak - self.components["headroom"]


def estimate(shape: ModelShape, s: Settings) -> Estimate:
    w = s.work()
    shapes = adapter_shapes(shape, s)
    trainable = sum(math.prod(x) for x in shapes)
    p_bytes = trainable * F32
    weights = weight_bytes(shape, s.dt, s.quant_bits, s.quant_group)
    optimizer = optimizer_bytes(s.optimizer, shapes)
    n = s.adapted_layers
    top_attn, top_mlp = layer_parts(shape, w, bottom=n == 1)
    one_layer = top_attn + top_mlp
    stack = (n - 1) * layer_saved(shape, w) + layer_saved(shape, w, bottom=True) \
        + w.tokens * shape.hidden * w.dt \
        - swiglu_between(shape, w, n)  # + the final RMSNorm's input; - see swiglu_between
    # Checkpointed, the layer inputs and a packed row's mask, every recomputed layer's argument
    # (checkpointed_mask_kept).
    mask_kept = checkpointed_mask_kept(w, s.checkpoint)
    ckpt_inputs = (n + 1) * w.tokens * shape.hidden * w.dt + n * dora_weights_kept(shape, w) \
        + mask_kept
    saved = ckpt_inputs if s.checkpoint else stack
    at_loss = saved - (0 if s.checkpoint else swiglu_ends(shape, w, n))  # see swiglu_ends
    # One bf16 layer holds swiglu_ends' buffer less into its own backward too, fused, and
    # blockwise without down_proj or DoRA (float32 and 2+ bf16 layers: not; backward_ends16).
    ends16 = backward_ends16(shape, w, n, s.checkpoint)
    loss = loss_peak(shape, w, s.loss_chunk)
    kept = loss_saved(shape, w, s.loss_chunk)
    # The top layer's backward: its MLP first (with all activations), then its attention
    # (the MLP's activations freed). Checkpointed, the layer's activations are recomputed.
    # (A recomputed DoRA layer reuses the dequantized weights kept for it.)
    base = top_mlp + top_attn - dora_weights_kept(shape, w, n == 1) if s.checkpoint else 0
    only = n == 1  # the top layer is the lowest: no gradient leaves it
    # A lowest layer without attention adapters runs no attention backward at all.
    attention_t = 0 if only and not w.targets & ATTENTION else \
        base - top_mlp + attention_backward_transient(shape, w, s.checkpoint, only)
    mlp_t = base + mlp_backward_transient(shape, w, s.checkpoint, only)
    if s.checkpoint and s.loss_chunk == 0:  # see lowest_gate_up_down16
        mlp_t += lowest_gate_up_down16(shape, w, only)
    if s.checkpoint:  # see lowest_recomputed_high: unchunked and chunked alike
        mlp_t += lowest_recomputed_high(shape, w, only)
    layer_t = max(mlp_t, attention_t)
    accumulate = s.grad_accumulation > 1
    update_t = update_transient(s.optimizer, shapes)
    resident = {"base weights": weights, "adapters": p_bytes, "optimizer state": optimizer,
                "gradients": p_bytes if accumulate else 0}
    phases = {
        # The forward pass ends in the loss: its logits (chunked, each chunk's gradient too,
        # computed in the forward).
        "forward": {"saved activations": at_loss,
                    "logits and loss": kept + loss_forward_transient(shape, w, s.loss_chunk)},
        # The backward pass starts with the loss's gradient (the logits' gradient unchunked).
        "backward, loss": {"saved activations": at_loss,
                           "logits and loss": kept + loss_backward_transient(shape, w,
                                                                             s.loss_chunk)},
        # (A lowest layer's MLP backward comes after the mask's last reader, its recomputation:
        # checkpointed_mask_kept.)
        "backward, top layer": {"saved activations": saved - ends16
                                - (mask_kept if only else 0),
                                "layer transient": layer_t},
        "update": {"gradients": 0 if accumulate else p_bytes, "update transient": update_t},
    }
    # A DoRA gate/up's norms and, in the run's first forward, its magnitude's come after the
    # top layer's attention part (see dora_first_norms); checkpointed, beside the layer
    # inputs, whose count already holds a quantized base's dequantized W.
    gate_up = dora_first_norms(shape, w)
    if gate_up:
        first = {"saved activations": saved - top_mlp, "layer transient": gate_up}
        if s.checkpoint:
            first = {"saved activations": ckpt_inputs,
                     "layer transient": gate_up - dora_gate_up_weights(shape, w)}
        phases["forward, first DoRA norms"] = first
    if s.dora and (s.checkpoint or not gate_up):
        before = dora_norms_before(one_layer, s.checkpoint)
        transient = dora_forward_transient(shape, w) + (
            0 if s.checkpoint else dora_weights_kept(shape, w))
        phases["forward, DoRA norms"] = {"saved activations": saved - before,
                                         "layer transient": transient}
    if only and not s.checkpoint and swiglu_forward_extra(shape, w, True):
        # A lowest layer that keeps part of its swiglu still computes all of it going forward.
        phases["forward, bottom layer"] = {
            "saved activations": saved - w.tokens * shape.hidden * w.dt,
            "layer transient": swiglu_forward_extra(shape, w, True)}
    if at_loss < saved:
        # Before the loss the ends still hold swiglu_ends' buffer: the top layer's MLP forward
        # (gate/up side by side, then the swiglu) beside everything kept below it. Measured,
        # not traced: with a small vocabulary it is the forward's peak (mech13L-*-v512-*-kup,
        # 4 layers, float32: 54.8 MB, the loss moment 2.2 T x I lower: -8.2% without this,
        # -3.1% with it; its 2-layer qwen2 twin at V 1,024 stays -5.4%, 0.8 T x I unpriced).
        phases["forward, top layer"] = {"saved activations": saved - top_mlp,
                                        "layer transient": mlp_forward_peak(shape, w)}
    held = gate_swiglu_forward(shape, w) + swiglu_forward_held(shape, w)
    if only and not s.checkpoint and held:
        # One adapted layer: its MLP forward holds more than mlp_forward_peak's, beside its
        # attention part: with gate_proj one T x I and one T x hidden (gate_swiglu_forward),
        # float32 without it two T x I (swiglu_forward_held; the two never both apply).
        phases["forward, lowest layer MLP"] = {
            "saved activations": saved - top_mlp,
            "layer transient": mlp_forward_peak(shape, w) + held}
    if s.checkpoint:
        # Checkpointed, the forward through the top layer keeps nothing for the backward
        # (it is recomputed there): on top of the layer inputs kept so far, its fullest
        # moment is the softmax or the MLP's projections.
        # (The softmax's mask is the kept one: counted once.)
        phases["forward, top layer"] = {"saved activations": ckpt_inputs,
                                        "layer transient": max(attention_forward_peak(shape, w)
                                                               - mask_kept,
                                                               mlp_forward_peak(shape, w))}
    if not accumulate:
        # Going down the layers, activations are freed as gradients appear: the other end of
        # the backward pass holds the gradients and the lowest layer's activations; not yet
        # that layer's attention gradients (see lowest_attention_gradients).
        lowest_kept = 0 if s.checkpoint else one_layer - ends16
        own_mlp, own_attention = lowest_attention_gradients(shape, s)
        # Recomputed, a stack's lowest layer holds what a one-layer stack's would in its MLP
        # backward, not the upper layer's count in mlp_t (lowest_recomputed_less: bf16, LoRA
        # gate/up/down).
        less = lowest_recomputed_less(shape, w, n) if s.checkpoint else 0
        moments = [(p_bytes - own_mlp, mlp_t - less), (p_bytes - own_attention, attention_t)]
        grads, moment = max(moments, key=sum)
        phases["backward, bottom layer"] = {"gradients": grads,
                                            "layer transient": moment + lowest_kept}
    held = {k: resident for k in phases}
    if gate_up:  # step 1's first forward (dora_first_norms): no optimizer state, no gradients
        held["forward, first DoRA norms"] = {"base weights": weights, "adapters": p_bytes}
    cast = load_peak(shape, s.dt, s.quant_bits, s.quant_group) - weights
    if cast > 0:
        # Loading a checkpoint stored in another dtype (or quantized at load) briefly holds a
        # tensor's stored copy beside what is loaded (memory/load.py): before the adapters,
        # optimizer state or any activation exist.
        phases["load"] = {"load cast": cast}
        held["load"] = {"base weights": weights}
    if s.loftq:
        # While loading only the quantized base and the fresh adapters exist (no optimizer
        # state or gradients yet), plus one float layer being initialised.
        phases["load, LoftQ"] = {"load transient": loftq_spike(shape, s.targets, s.rank, s.dt)}
        held["load, LoftQ"] = {"base weights": weights, "adapters": p_bytes}
    # With accumulation each layer's gradients are added into the accumulated ones as soon as
    # they exist (backends/mlx/update.py evaluate_gradients), so there is never a second copy.
    extra: tuple[str, ...] = ()
    if s.ranks > 1:  # the gradient all-reduce after the backward pass (backends/*/distributed)
        phases["all-reduce"] = {"gradients": 0 if accumulate else p_bytes,
                                "communication buffer": communication_bytes(p_bytes)}
        held["all-reduce"] = resident
        extra += ("communication buffer",)
    if s.loftq:
        extra += ("load transient",)
    phase = max(phases, key=lambda k: sum(held[k].values()) + sum(phases[k].values()))
    if phase == "load":  # shown only where it decides the peak (phase_peaks has it always)
        extra += ("load cast",)
    names = COMPONENTS[:-1] + extra + ("headroom",)
    components = {c: held[phase].get(c, 0) + phases[phase].get(c, 0) for c in names}
    components["headroom"] = headroom(shape, w, s)
    sizes = {**resident, "gradients": p_bytes, "saved activations": saved,
             "logits and loss": loss, "layer transient": layer_t,
             "update transient": update_t, "headroom": components["headroom"],
             **({"load transient": phases["load, LoftQ"]["load transient"]} if s.loftq else {}),
             **({"load cast": cast} if phase == "load" else {})}
    notes = {"saved activations without checkpointing": stack,
             "saved activations with checkpointing": ckpt_inputs + one_layer,
             "logits and loss unchunked": loss_peak(shape, w, 0),
             "logits and loss, 512-token chunks": loss_peak(shape, w, 512)}
    if s.ranks > 1:
        sizes["communication buffer"] = communication_bytes(p_bytes)
        # a ring all-reduce sends (and receives) 2 (N-1)/N of this per rank
        notes[f"all-reduce payload per optimizer step ({trainable:,} float32 "
              "gradients)"] = p_bytes
    return Estimate(shape.params_total, trainable, sizes, components, phase,
                    {k: sum(held[k].values()) + sum(v.values()) for k, v in phases.items()},
                    notes)


def lowest_attention_gradients(shape: ModelShape, s: Settings) -> tuple[int, int]:
    """Float32 bytes of the lowest adapted layer's attention adapter gradients that do not
    exist yet at its MLP backward's fullest moment (q/k/v/o) and at its attention backward's
    (q/k/v). Traced: the gradient reaches a layer's attention only through its MLP's backward,
    and update.evaluate_gradients evaluates a layer's MLP block before its attention block;
    within the attention's backward o_proj's gradient comes first (from the output's gradient),
    q/k/v's only after the score square's backward. Measured per block (strict, active memory
    around each mx.eval, in_sample_round18_planner19b's mech19b-qwen2-h256-4x1-1l-*-all-r64-sgd,
    bf16, one layer, r=64 on all seven): the MLP block peaked at 9.648 MiB with 0.844 MiB of MLP
    gradients after it; the 0.406 MiB of q/k/v/o appeared only after the attention block.
    Counted at the MLP's moment, the one-layer r=64 twins were +5.1..+6.6% over (now +1.4..+1.8%,
    float32 +2.3 -> -0.9%); attention adapters alone (-qkvo) +11.2% -> +5.4% in the backward.
    The MLP's own gradients stay counted: they form within the evaluation that peaks, and the
    one-layer twins without them would sit 7-10% under their highest draw."""
    one = dataclasses.replace(s, adapted_layers=1)
    per = {p: sum(math.prod(x) for x in adapter_shapes(shape, dataclasses.replace(
        one, targets=(p,)))) * F32 for p in s.targets if p in ATTENTION}
    return sum(per.values()), sum(v for p, v in per.items() if p != "o_proj")


def dora_norms_before(top_layer: int, checkpoint: bool) -> int:
    """Bytes of the saved activations not yet made when the top layer's DoRA norms are formed,
    not checkpointed: its own kept part (top_layer). The norms depend on the weights alone, not
    on the layer's input, so they need not wait for it. Measured, not traced (strict,
    benchmarks/planner_heldout.py): in_sample_round12_sweep's sweep13-04 (4-bit, bf16, DoRA r4
    on q/k/v/gate/up/down of 2 of 3 layers, hidden 512, I 1,728, 1 x 256, W + BA 13.1 MiB a
    layer) measured a 48.5 MiB forward against 56.9 planned at the norms (+17.5%); without the
    top layer's 17.8 MiB the loss decides, +0.7%. round 8's mech8-qwen3-h256-4x4-3l-i1024-bf16-
    2x64-nockpt-dora-up forward +2.3% -> -0.8%; no other stored row moves. Checkpointed runs keep
    the whole count (their DoRA forward is under, not over: in_sample_round12_planner13s's
    mech13s-*-1x64-ckpt-dora-* v/gate/up twins held 2 x W + BA, not 1, -13..-22%; not priced:
    round 1's in-sample-06, checkpointed DoRA without up_proj, fits with 1). A DoRA gate/up
    is priced apart, in the run's first forward (activations.dora_first_norms):
    there its norms come after the top layer's attention part, not before the layer."""
    return 0 if checkpoint else top_layer


def communication_bytes(gradient_bytes: int) -> int:
    """The all-reduce's own memory: mlx-nn's average_gradients concatenates the gradients into
    32 MiB groups and returns a reduced copy of all of them while the accumulated gradients are
    still referenced (backends/mlx/distributed.py): the copy, plus a group's concatenation, its
    sum and its mean in flight."""
    return gradient_bytes + 3 * min(ALL_REDUCE_GROUP_BYTES, gradient_bytes)


def headroom(shape: ModelShape, w: Work, s: Settings) -> int:
    """Allocator headroom: MLX checks the memory limit after each op, so one op's output can
    land on top of a full budget; the largest op output is a logits buffer or an MLP buffer."""
    rows = min(s.loss_chunk, w.tokens) if s.loss_chunk else w.tokens
    return max(rows * shape.vocab * F32, w.tokens * shape.intermediate * F32)


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    model: str
    source: str
    shape: ModelShape
    settings: Settings
    device: Device
    estimate: Estimate

    @property
    def predicted_peak_bytes(self) -> int:
        return self.estimate.peak

    @property
    def budget_bytes(self) -> int:
        return self.device.budget_bytes

    @property
    def fits(self) -> bool:
        return self.predicted_peak_bytes <= self.budget_bytes

    def to_json(self) -> dict:
        e = self.estimate
        return {"model": self.model, "config_source": self.source,
                "device": self.device.name, "device_kind": self.device.kind,
                "budget_source": self.device.source,
                "params_total": e.params_total, "trainable_params": e.trainable_params,
                "components": e.components, "component_sizes": e.sizes,
                "peak_phase": e.phase, "phase_peaks": e.phases, "alternatives": e.notes,
                "predicted_peak_bytes": self.predicted_peak_bytes,
                "budget_bytes": self.budget_bytes, "fits": self.fits,
                "settings": self.settings.__dict__ | {"targets": list(self.settings.targets)}}


def make_plan(recipe: Recipe, shape: ModelShape, device: Device, source: str = "",
              ranks: int = 1) -> Plan:
    settings = Settings.from_recipe(recipe, shape, metal=device.kind == "apple", ranks=ranks)
    return Plan(recipe.model.path, source, shape, settings, device, estimate(shape, settings))


@dataclass(frozen=True)
class DataPeak:
    """The plan of the data's own largest micro-batch, beside the max_seq_length worst case."""

    rows: int
    width: int
    estimate: Estimate
    budget: int

    @property
    def peak(self) -> int:
        return self.estimate.peak

    @property
    def fits(self) -> bool:
        return self.peak <= self.budget


def data_peak(plan: Plan, shapes) -> DataPeak:
    """The largest predicted peak over the data's micro-batch shapes (rows, width): a batch is
    only as wide as its longest row, so real data usually needs less than the worst case. Every
    distinct shape is priced (a shorter batch with more rows can outweigh the widest one).
    SFT rows only (data/longest.py plans no preference pairs)."""
    best = None
    for rows, width in shapes:
        s = dataclasses.replace(plan.settings, batch=rows, seq=width)
        e = estimate(plan.shape, s)
        if best is None or e.peak > best.estimate.peak:
            best = DataPeak(rows, width, e, plan.budget_bytes)
    return best
