"""Is the memory planner accurate on configurations it never saw? A held-out check.

`benchmarks/memory_profile.py` compares the planner with MLX on the configurations its constants
were fitted on (in-sample). Here a seeded random generator draws configurations over the whole
knob space (architecture, sizes, tied/untied head, vocabulary up to 151,936, rank, targets,
adapter type, batch, length, packing, checkpointing, loss chunking, optimizer, dtype, 4-bit).
The held-out set was drawn once (`--draw`, seed HELDOUT_SEED) and committed to
benchmarks/planner_heldout_configs.json *before anything was measured*; no planner constant is
ever fitted on it. A second draw with another seed (IN_SAMPLE_SEED) is the in-sample set, the one
used to find and fix the planner's errors.

    .venv/bin/python benchmarks/planner_heldout.py --draw      # (done once) write the configs
    .venv/bin/python benchmarks/planner_heldout.py             # measure both sets, compare
    .venv/bin/python benchmarks/planner_heldout.py --reuse     # planner changed: re-predict only
    .venv/bin/python benchmarks/planner_heldout.py --repredict # in-sample groups, stored rows
    .venv/bin/python benchmarks/planner_heldout.py --measured-only  # report, measure nothing
    .venv/bin/python benchmarks/planner_heldout.py --draw-roundN    # (done once) round N's set
    .venv/bin/python benchmarks/planner_heldout.py --only heldout-roundN --processes 3 --jobs 2
    .venv/bin/python benchmarks/planner_heldout.py --only in-sample-GROUP --jobs 1
    .venv/bin/python benchmarks/planner_heldout.py --repeat NAME,NAME  # measure again

The draw flags (`--draw-roundN`, `--draw-sampleNN` for the in-sample sweeps) are the keys of
_planner_draw.ROUNDS; every group `--only` takes is in GROUPS below (underscores as dashes);
`--cheap-first` measures in order of cost, so a stopped run has measured the most.
benchmarks/README.md lists the commands each round ran.

Each configuration is measured in a fresh process (benchmarks/memory_profile.py's way: strict
mode, synthetic full-length batches, `mlx_eden.memory.measure.run_profile`); measurements are
stored in benchmarks/work/planner_heldout/measured.json keyed by the configuration.
`--processes 3` measures each in three fresh processes and scores the highest peak (and each
phase's highest): fixed in session 10, before round 18 was drawn, for every held-out round from
18 on (rounds 1-17 stay single-process, as published), since one process's peak is one draw of
a race (worst_of).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CONFIGS = ROOT / "benchmarks" / "planner_heldout_configs.json"
WORK = ROOT / "benchmarks" / "work" / "planner_heldout"
CACHE = WORK / "measured.json"
REPEATS = WORK / "repeats.json"
RESULT = ROOT / "benchmarks" / "results" / "planner_heldout.json"
# in_sample_mechanisms: hand-made in-sample configurations, each exercising one mechanism a
# held-out round found mispriced (fixes are verified on these, never on held-out ones);
# in_sample_blockwise: in-sample configurations run again with train.attention=blockwise.
# in_sample_blockwise_ckpt: round 5's in-sample draws for the blockwise attention's backward
# (hand-made shapes, B x L, heads, KV heads, dtype, checkpointing varied one at a time).
# in_sample_round6: new hand-made shapes for round 6's repricing (mech6-*): the blockwise
# backward after the dq wait, KV heads = heads, one recomputed layer, our SwiGLU's MLP.
# in_sample_round7: new hand-made shapes for round 7 (mech7-*): non-checkpointed runs of 1-5
# layers whose peak is at the loss (our SwiGLU's kept buffers in the layers between);
# in_sample_round7_dora: DoRA's recomputed backward (round 6's DoRA misses), not yet repriced.
# in_sample_round8_blockwise: new hand-made shapes (mech8-*) for the blockwise backward after
# its output-gradient wait (round 8): non-checkpointed, mostly float32 with KV heads = heads.
# in_sample_round8_fused: new hand-made shapes for round 8 (mech8-*): the fused attention's
# backward (round 7's misses heldout7-04/-01): packed (array mask) or causal, KV heads = heads
# or fewer, fp32 and bf16, checkpointed or not.
# in_sample_round8_dora: new hand-made DoRA shapes (mech8-*) separating T x out from out x in
# (tokens against weight size), bf16/fp32, 4-bit or not, checkpointed or not, and a LoRA twin
# (same shape and values, adapter.type lora) of each of them and of round 7's DoRA draws:
# DoRA's own cost is a DoRA run less its twin (activations.py, _dora and dora_*).
# in_sample_round8_swiglu: new hand-made shapes (mech9s-*) for the MLP's forward in a lowest
# layer (bf16 SwiGLU's float32 sigmoid suspected, measured neutral): MLP-dominated
# (intermediate 8-10x hidden), up/gate/down/attention/all adapted, bf16 with float32 twins.
# in_sample_round8_mlp: new hand-made LoRA shapes (mech8-qwen3-h160-*-i1152-*) for the
# recomputed MLP backward (round 7's heldout7-01 miss): checkpointed, fp32 and bf16, adapters on
# up / down / up+down / gate+up / gate+down / all three, every layer or the lowest alone
# (and the test shape of tests/test_planner_phases.py, mech8-qwen3-h128-4x1-*).
# in_sample_round9_planner10a: new hand-made shapes (mech10a-*) for the unchunked bf16 loss's
# forward (heldout8-10's forward 20.9% over): a small hidden, vocabulary 4-8k, 2 x 320 packed,
# DoRA on down_proj, accumulation 2, with one knob changed at a time (LoRA, vocabulary, fp32,
# not checkpointed, blockwise, one layer, accumulation 1, B x L: 1 x 384/640, 2 x 384/448,
# 4 x 160); the repeats of five of them in the results (forward_repeats_bytes).
# in_sample_round9_planner10b: new hand-made shapes (mech10-qwen3-h256-4x1-3l-*) for the forward
# of a checkpointed blockwise float32 layer with all seven LoRA adapters on a 4-bit base (round
# 8's heldout8-01 forward miss): 4-bit vs float base, intermediate, hidden, length, fused,
# targets and accumulation varied one at a time.
# in_sample_round10_planner11L: new hand-made shapes (mech11L-*) for the unchunked loss's
# forward once the bf16 head output is held until the exponentials exist (chunked_loss.ce_sum):
# bf16 and float32, tied and untied, vocabulary 4,096-32,768, checkpointed or not, a 4-bit base.
# in_sample_round10_planner11m: new hand-made packed fused shapes (mech11m-*) for the additive
# float mask (model.attention_mask, round 10): fp32 and bf16, KV heads = heads or fewer,
# 256-1,024 tokens, checkpointed or not; the bool mask's peaks beside them come from
# benchmarks/packed_mask_ab.py --memory.
# in_sample_round10_planner11a: new hand-made shapes (mech11a-*) for the bf16 checkpointed fused
# attention's backward (round 8's open miss): causal rows (no packed mask), attention adapters
# only (q, k, v, o alone, q+v), 2-8 heads, GQA or not, 256-640 tokens, with float32 twins.
# in_sample_round10_planner11q: new hand-made shapes (mech11q-*) for a lowest layer's MLP
# forward: Qwen2/Qwen3 twins of one MLP-dominated up_proj shape (bf16, float32, intermediate
# doubled, other heads and lengths, blockwise), and a checkpointed DoRA up_proj (1-2 layers,
# weight large or small next to T x I) with its LoRA twins.
# in_sample_round10_planner11g: new hand-made shapes (mech11g-*) for a lone gate_proj, up_proj or
# down_proj adapter's MLP backward (round 8's open misses: a lone gate or down backward 30-35%
# over): 1-3 layers, checkpointed or not, bf16 with float32 twins, Qwen2 and Qwen3, T 256-512.
# in_sample_round11_planner12u: new hand-made shapes (mech12u-*) for the update phase of a DoRA
# r=64 adapter on all seven projections (round 10's heldout10-11 update 15.8% over): qwen3 h128,
# 2 layers, 1 x 256, one knob changed at a time (LoRA, float base, float32, accumulation 1, sgd,
# adam, rank 16).
# in_sample_round12_planner13v: new hand-made shapes (mech13v-*) for a checkpointed bf16 fused
# layer with a lone v_proj adapter under GQA (round 11's heldout11-00 backward miss): qwen2
# h512/h256, 8 heads, 2 layers, 1 x 512, one knob changed at a time (q / k / o alone, v with
# o / gate / down, KV heads 1/2/8, float32, 2 x 512, 384 tokens, not checkpointed, 3 layers,
# packed, 4-bit, Qwen3); a race (one square, run to run): repeats in benchmarks/README;
# float32 causal not-checkpointed twins at 512-1,024 tokens.
# in_sample_round12_planner13u: new hand-made shapes (mech13u-*) for Adafactor's update (round
# 11's heldout11-07 update 15.9% under): qwen3 h160, 3 layers, float32, 1 x 128, r=64 on up and
# down of a 4-bit base, one knob changed at a time (adamw, sgd, r=8, untied, float base, down
# alone, all seven, accumulation 2, 6 layers at r=16).
# in_sample_round12_planner13k: new hand-made shapes (mech13k-*) for a recomputed upper layer's
# MLP backward on a 4-bit base in float32 (round 11's heldout11-04 backward 7.3% under): qwen2,
# checkpointed, blockwise, packed 1 x 512, LoRA on k/v/gate/down; one knob changed at a time
# (float base, targets gate+down / k+v / k+v+down / k+v+gate, causal, fused, 2 layers, I 1,024,
# hidden 320, 1 x 256); and two shapes without an MLP adapter predicted before measuring.
# in_sample_round12_planner13L: new hand-made shapes (mech13L-*) for the end layers' swiglu
# buffers and the top layer's backward, not checkpointed (round 11's heldout11-06 forward/backward
# +6.3/+7.0%): qwen3 h160 4 layers I 1,600 V 3,072 float32 2 x 160 packed unchunked k/o/down, one
# knob changed at a time (I 480/960, targets k/o, down, q/v, k/up, k/up/down, k/gate/up/down,
# chunk 64, unpacked, 1 x 320, V 512-8,192, 1-2 layers, bf16, qwen2, heads, h128, blockwise).
# in_sample_round12_sweep (planner13s): 24 configurations drawn by the held-out generator under
# an in-sample seed (_planner_draw.py's --draw-sample13), to surface round 12's misses early;
# in_sample_round12_planner13s: hand-made twins (mech13s-*), one knob at a time, of three of its
# misses: sweep13-17 (bf16 fused checkpointed, MLP adapters only: the recomputed upper layer's
# softmax gradient), sweep13-18 (a checkpointed 4-bit DoRA v/gate/up forward) and sweep13-11
# (a float32 lone gate_proj in one layer, not checkpointed). sweep13-04 (not checkpointed DoRA:
# the top layer's norms before its activations) was priced on its own row (no twins: 4-bit bf16
# at 1 x 256 took 811 s at load 18).
# in_sample_round13_planner14b: new hand-made shapes (mech14b-*) for a bf16 not-checkpointed
# blockwise forward/backward with a small vocabulary (round 12's heldout12-03 -9.7%): qwen3 h192
# 6 x 1 heads, 3 layers, I 640, V 768 untied, 2 x 128 packed, unchunked, accumulation 2, LoRA r=4
# on q/k/v/up; one knob at a time (float32, chunk 64, unpacked, accumulation 1, q/k/v, up alone,
# fused, 1 layer, I 960, float32 fused).
# in_sample_round13_sweep (planner15w): 14 configurations drawn by the held-out generator under
# an in-sample seed (_planner_draw.py's --draw-sample14) on the code after planner14b's fix, to
# surface round 13's misses early; in_sample_round13_planner15w: hand-made twins (mech15w-*),
# one knob at a time, of sweep14-09 (backward +14.7%: qwen3 h128 4 x 2 heads, 1 layer, I 320,
# V 8,192 tied, 4-bit, bf16, k/o/gate/up r=32, 2 x 192, fused, not checkpointed, chunk 256):
# float base, float32, k/o/up, gate/up, k/o, I 640, 1 x 384, qwen2, blockwise; on the float base
# qwen2, v or q instead of k (each Qwen3 and Qwen2 for v), k/gate/up, gate/up at I 320 and 960.
# in_sample_round13_planner15p: new hand-made twins (mech15p-*) of two phase misses of
# in_sample_round12_sweep, one knob at a time: sweep13-14's backward (qwen3 h64 1 layer, V 4,096
# untied, float32, r=64 k/v/o/gate/up, 4 x 128 packed, checkpointed, chunk 256: chunk 0/128,
# V 1,024, r=8, k/v/o, gate/up, 2 layers, fused, unpacked, I 512, I 512 with down_proj, bf16
# at I 128 and 512, hidden 128 with 4 x 4 heads) and sweep13-02's update (qwen2 h256
# 4-bit, 1 x 192, accumulation 2, sgd, r=64 q/v, made cheap in float32: float base,
# accumulation 1, r=8, adamw; bf16 at 1 x 64).
# in_sample_round15_planner16d: new hand-made cheap twins (mech16d-*) of round 14's forward miss
# (heldout14-04: 4-bit bf16 DoRA r=8 on k/v/o/gate/up of 4 layers, 1 x 64, not checkpointed):
# qwen3 h256 4 x 2 heads, I 1,024, V 1,024 untied, one knob at a time: float base, LoRA, k/v/o,
# gate/up, 1 and 2 layers, adamw, accumulation 1, checkpointed; 1 layer at 1 x 128 and 1 x 256.
# in_sample_round16_planner17o: new hand-made cheap twins (mech17o-*) of round 15's checkpointed
# bf16 fused DoRA over-counts (heldout15-10 backward +11.7%, forward +16.8%; heldout15-01): qwen3
# h128 2 x 2 heads, 2 layers, I 512, V 512 tied, bf16, fused, packed 1 x 192, checkpointed,
# unchunked, adam, LoRA r=8 on all seven projections; one knob at a time: DoRA, 1 x 96 / 1 x 384 /
# 2 x 192, I 1,024, hidden 256 (4 x 4 heads), gate/up/down, gate/up, q/k/v/o or q/k/v/gate/up
# only, float32, blockwise, causal, qwen2, 3 layers; DoRA on gate/up, on q/k/v/gate/up, at
# 1 x 384 and at I 1,024; a qwen2 h256 I 768 1 x 256 causal chunk-128 DoRA/LoRA q/k/v/gate/up pair.
# in_sample_round16_planner17f: new hand-made cheap twins (mech17f-*) of round 15's forward miss
# heldout15-00 (float32, fused, not checkpointed, LoRA r=16 on q/k/o/gate/down, adamw8bit,
# accumulation 2: forward +10.6%) and sweep14-02: qwen2 h192 6 x 1 heads, 2 layers, I 896,
# V 2,048 tied, 2 x 256, chunk 256; one knob at a time (adamw, accumulation 1, blockwise,
# chunk 0, packed, 6 KV heads, 1 layer; targets q/k/o/down, q/k/o, gate/down, gate alone,
# o/gate, q/k/o/up/down, q/gate; 1 and 4 layers of gate alone; the adapted layer above a frozen
# one; blockwise o/gate, gate, one layer and bf16), and mech17f-again-*: round 1's in-sample-01,
# -08, mech-qgate-bigmlp-nockpt and the calibration set's tiny-b4-s256-fp32 measured again on
# today's code (they were measured before our SwiGLU).
# in_sample_round16_sweep (planner17s): 12 configurations drawn by the held-out generator under
# an in-sample seed (_planner_draw.py's --draw-sample16) on the round-15 planner (after
# planner16d), to surface round 16's misses early; constants may be fitted on it.
# in_sample_round16_planner17s: hand-made twins (mech17s-*), one knob at a time, of the sweep's
# worst miss, sweep16-01 (backward -5.5%: qwen2 h256 8 x 1 heads, 1 layer, I 704, V 512 untied,
# bf16, LoRA r=4 on gate_proj alone, 4 x 256, checkpointed, unchunked, 8-bit AdamW, blockwise):
# I 1,408, 2 x 256, 1 x 256, hidden 512, float32, Qwen3, 2 layers, up_proj instead of gate_proj,
# 3 layers adapting the top one, Qwen3 at 1 x 256 and at hidden 128, fused (Qwen2 and Qwen3).
# A race, not priced: repeats in the results' race_measurements_mib and benchmarks/README.
# in_sample_round16_planner17q: new hand-made cheap twins (mech17q-*) of a quantized DoRA
# gate/up's norms across tokens (sweep13-04 +8.1% and round 15's 1-layer mech16d twin -8.4% at
# 1 x 128): the 1-layer mech16d shape at 1 x 96 / 192, I 2,048, k/v/o/up, gate/up alone, 2
# layers at 1 x 128; a cheap Qwen2 twin of sweep13-04 (h256, 2 x 2 heads, 3 layers, I 864,
# DoRA r=4 on q/k/v/gate/up/down of the top 2, unchunked) at 1 x 128 and 1 x 256; the 1-layer
# shape on a float base at 1 x 64 and 1 x 128.
# in_sample_round17_planner18a: new hand-made cheap twins (mech18a-*) of rounds 16-17's worst
# (heldout16-07, heldout17-11: float32 blockwise checkpointed one layer, LoRA on k or q/o and
# gate/up/down, backward under the plan, racing): qwen2 h256 4 x 2 heads, 1 layer, I 896,
# V 2,048 tied, float32, LoRA r=8 on k/o/gate/up/down, 2 x 256 packed, checkpointed, chunk 64,
# adamw; one knob at a time: gate/up/down, k/o/gate/up, k/o/up/down, k/o, fused, not
# checkpointed, 2 layers, 1 x 256, 2 x 128, I 1,792 (k/o/gate/up/down and k/o/gate/up), hidden
# 128, q/o; and two predicted before measuring (qwen2 h192 I 768 1 x 384; qwen3 I 1,280 1 x 512
# q/v/gate/up/down r=16). Each measured in 6-8 processes (--repeat; race_measurements_mib).
# in_sample_round18_sweep19 (planner19s): 10 configurations drawn by the held-out generator under
# an in-sample seed (_planner_draw.py's --draw-sample19) on the round-18 planner (after
# planner18a), each measured in three processes and scored by the highest, as the held-out
# rounds are since round 18; constants may be fitted on it.
# in_sample_round18_planner19s: hand-made cheap twins (mech19s-*), one knob at a time, of the
# sweep's worst row, sweep19-04 (-4.2% in its first three processes: qwen3 h128 4 x 1 heads,
# 1 layer, I 320, V 1,024 tied, float32, LoRA r=16 on k_proj alone, 1 x 192 packed,
# checkpointed, unchunked, sgd, blockwise): 1 x 384, 2 x 192, V 2,048, chunk 64, causal, fused,
# not checkpointed, I 640, hidden 256, q_proj, adamw, qwen2, I 960; each in three processes. The
# recomputed lowest layer's backward races one float32 T x I (planner17s's race, here with no
# MLP adapter): not priced (benchmarks/README).
# in_sample_round18_planner19b: new hand-made cheap twins (mech19b-*) of round 18's two r=64
# over-counts in the lowest layer's backward (heldout18-02, heldout18-10), each measured in three
# processes (--processes 3, the highest scored): qwen2 h256 4 x 1 heads, 1 layer, I 896, V 512
# tied, bf16, fused, 3 x 64, not checkpointed, chunk 128, sgd, LoRA r=64 on all seven; one knob
# at a time (r=8, r=16, adamw, adafactor, q/k/v/o, gate/up/down, float32, 2 layers,
# checkpointed); qwen2 h192 6 x 6 heads, 2 layers, I 640, V 2,048 tied, float32, 1 x 128
# packed, checkpointed, chunk 256, adafactor, r=64 on q/k/gate/up/down; one knob at a time (r=8,
# sgd, adamw, not checkpointed, 1 layer, q/k, gate/up/down, bf16); and two kinds the fix moves
# the other way: qwen2 h128 float32 not checkpointed, the top of 2 layers adapted (r=64, r=8,
# 1 layer, bf16) and qwen3 h96 bf16 checkpointed blockwise q/up over 3 layers (r=64, r=8).
# in_sample_round18_planner19a: new hand-made cheap twins (mech19a-*) of round 18's worst
# (heldout18-03: float32 fused, not checkpointed, q/k/v/o, 2 x 512 causal, one square under in
# every draw): qwen3 h192 6 x 2 heads, 2 layers, I 448, V 1,024 tied, float32, LoRA r=4 on
# q/k/v/o, 2 x 512 unpacked, unchunked, sgd, accumulation 2; one knob at a time: blockwise,
# qwen2, 6 KV heads, 2 x 256 / 2 x 384 / 2 x 768 / 4 x 256 / 1 x 512 / 1 x 1,024, hidden 96,
# hidden 384 at accumulation 1, v/o, gate/up/down, one layer, checkpointed, packed,
# accumulation 1, chunk 128. Each in three processes (--processes 3).
# in_sample_round19_planner20c: hand-made twins (mech20c-*) of the calibration set's fused
# forward over-count (memory_profile.py's tiny-b2-s512-chunk, +6.5% forward): its tiny model
# (qwen2 h256 4 x 2 heads, 2 layers, I 768, V 2,048 tied), bf16, fused, LoRA r=8 on all seven,
# 2 x 512 unpacked, not checkpointed, chunk 256, adam; one knob at a time: float32, 2 x 256,
# unchunked, one layer, q/k/v/o only, 1 x 512, qwen3, 3 layers, q/v; and
# mech9s-qwen2-h128-2l-i1280-bf16-2x256-nockpt-qv re-measured (mech20c-again-*), with V 4,096
# and with I 384. Two processes each for the first ten (forwards equal), one for the rest.
# in_sample_round19_planner20a: new hand-made cheap float32 twins (mech20a-*) of round 19's worst
# (heldout19-02: one layer, not checkpointed, LoRA on k/up/down, -15.5% by its highest draw):
# qwen3 h192 6 x 1 heads, 1 layer, I 800, V 1,024 untied, float32, blockwise, LoRA r=16 on
# k/up/down, 2 x 384 unpacked, not checkpointed, chunk 64, adam; one knob at a time: up/down, up,
# down, k, gate/up/down, k/up, gate, I 1,600, fused, checkpointed, 2 layers, V 2,048, qwen2;
# k alone at V 2,048, I 1,600, unchunked and in qwen2. Each in three processes (--processes 3).
# Not priced (benchmarks/README: a compiled-step T x I and a step-1 evaluation order).
# in_sample_round21_planner22a: new hand-made float32 one-layer shapes (mech22a-*) for the lowest
# layer's MLP backward with up_proj adapted beside down_proj or an attention adapter
# (heldout19-02's kind, planner20a's twins): qwen2 h256 4 x 2 heads, 1 layer, I 1,024, V 1,024
# untied, float32, blockwise, LoRA r=16 on k/up/down, 1 x 512, not checkpointed, chunk 64, adam;
# one knob at a time: q or v/o instead of k, up/down, k/up, up, gate/up/down, k/down, 4 x 128,
# 2 layers with only the top adapted (adapter.layers 1), checkpointed; and a second family
# (qwen3 h128 4 x 1 heads, I 640, V 1,024 tied, fused, r=8, 2 x 256, chunk 128, adafactor) with
# k/up/down, up/down and k/up. Each in three processes (--processes 3).
# in_sample_round21_planner22c: new hand-made cheap float32 twins (mech22c-*) of
# in_sample_round18_planner19a's two open misses (-gud -16.7%, -vo -12.7%: the fused backward's
# softmax-gradient square for target sets without q/k and o_proj): qwen3 h192 6 x 2 heads, 2
# layers, I 448, V 1,024 tied, float32, fused, LoRA r=4, 1 x 512 unpacked, not checkpointed,
# unchunked, sgd, accumulation 1; targets gate/up/down (the base), v, o, v/o, gate, up, down,
# q/v, k/o, all seven; gate/up/down at 1 x 256, 1 x 384 and 1 x 768, one layer, checkpointed and
# bf16, v/o in bf16 (boundaries); qwen2 h128 4 x 2 heads, I 512: gate/up/down, v/o, v at 1 x 768;
# round 12's mech13v-qwen2-h256-8x8-2l-f32-1x768-nockpt-v again (mech22c-21-again-*); gate/up/down
# with 6 KV heads and at 1 x 1,024. Each in three processes (--processes 3).
# in_sample_round21_planner22b: new hand-made cheap float32 twins (mech22b-*) of round 21's worst
# (heldout21-08: one layer, not checkpointed, blockwise, LoRA on k/v/gate, forward +9.7% under
# swiglu_ends' one-layer gate_proj compensation): qwen2 h256 4 x 1 heads, 1 layer, I 1,024,
# V 1,024 tied, float32, blockwise, LoRA r=8 on k/v/gate, 1 x 384 packed, not checkpointed,
# chunk 256, adam; one knob at a time: gate, gate/up, o/gate, gate/down, k/v (no gate_proj),
# fused, fused gate, 2 x 256, unpacked, I 2,048, qwen3, h384 (I 1,536), 2 layers, V 4,096; and
# a qwen3 h192 3 x 1 heads I 1,536 (8 x hidden) 2 x 256 unpacked family with gate and k/v/gate;
# and five stored one-layer gate_proj rows measured again (mech22b-*-again-*: mech11g's qwen2
# fused, mech13s's I 1,152 blockwise, I 576 fused and qwen2, mech17f's -g). Each in three
# processes (--processes 3).
# in_sample_round21_planner22d: new hand-made cheap twins (mech22d-*) of in_sample_round19_
# planner20c's attention-only backward over-counts (bf16, fused, not checkpointed, 2 layers:
# q/v +16.3%, q/k/v/o +9.2%): qwen2 h128 4 x 2 heads, 2 layers, I 384, V 512 untied, bf16,
# fused, LoRA r=8 on q/v, 2 x 256 unpacked, not checkpointed, chunk 64, adamw; one knob at a
# time: q/k/v/o, k, o, v, q/v/up, all seven, 1 and 3 layers, I 1,280, V 4,096, unchunked,
# checkpointed, float32, qwen3, 1 x 512, 4 KV heads, packed, 4 KV heads packed; and the
# calibration tiny model (h256, I 768, V 2,048 tied, chunk 256, adam) at 2 x 256 with q/v and
# q/k/v/o and at 1 x 512 with q/v. And twins of heldout20-06's backward miss (mech22d-23..30,
# groundwork): qwen2 h128 4 x 2 heads, 1 layer, I 512, V 2,048 tied, 4-bit, bf16, LoRA r=16 on
# q/k/v/up, 4 x 64 packed, checkpointed, chunk 256, adamw8bit; one knob at a time: I 1,024,
# 4 x 128, q/k/v, float base, unpacked, adamw, up alone. Each in three processes (--processes 3).
# in_sample_round21_planner22e: new hand-made cheap twins (mech22e-*) of planner22a's open
# float32 one-layer backward over-counts (mech22a-08 k/down +10.7%, mech22a-11 checkpointed
# k/up/down +10.6%): planner22a's qwen2 base (h256 4 x 2 heads, 1 layer, I 1,024, V 1,024 untied,
# float32, blockwise, LoRA r=16, 1 x 512, chunk 64, adam) with k/down, q/down, down, o/down,
# k/gate/down, k, 2 layers k/down, bf16 k/down (boundary), checkpointed k/down, up/down and k;
# and its qwen3 base (h128 4 x 1 heads, I 640, V 1,024 tied, fused, r=8, 2 x 256, chunk 128,
# adafactor) with k/down, down, checkpointed k/up/down and k/down, bf16 k/down. Each in three
# processes (--processes 3).
# in_sample_round21_sweep22 (planner22s): 12 configurations drawn by the held-out generator under
# an in-sample seed (_planner_draw.py's --draw-sample22) on the planner after planner22a and
# planner22c, each measured in three processes and scored by the highest; constants may be
# fitted on it.
# in_sample_round22_planner23a: new hand-made cheap twins (mech23a-*) of heldout22-08 (bf16
# blockwise checkpointed, only the top layer of 3 adapted, LoRA r=64 on all seven, unchunked:
# backward -9.0%, forward +7.9% over): qwen2 h256 4 x 1 heads, 3 layers, I 1,024, V 512 tied,
# bf16, blockwise, LoRA r=64 alpha 128 on all seven, adapter.layers 1, 2 x 256 unpacked,
# checkpointed, unchunked, adam; one knob at a time: all layers, top 2, attention-only,
# MLP-only, chunk 64, r=8, float32, fused, qwen3, not checkpointed (boundary), I 1,536; a
# qwen3 h192 3 x 1 heads, 2 layers, I 960 family with the top layer and all layers adapted; a
# one-layer model and 2 x 96. Each in three processes (--processes 3).
# in_sample_round22_planner23b: new hand-made cheap twins (mech23b-*) of heldout22-10's float32
# fused checkpointed backward (-6.3%): qwen3 h128 4 x 2 heads, 2 layers, I 512, V 1,024 tied,
# float32, fused, LoRA r=8 on q/k/v/o/down, 2 x 384 unpacked, checkpointed, accumulation 2,
# chunk 128, adam; one knob at a time: q/k/v/o, down, 1 and 3 layers, blockwise, 2 x 256,
# accumulation 1, qwen2, 1 x 768, not checkpointed (boundary); and a second family (h192 6 x 2
# heads, I 640, V 512 untied, r=16) at 2 x 384, 2 x 256 and q/k/v/o. Each in three processes
# (--processes 3).
# in_sample_round22_planner23c: new hand-made cheap twins (mech23c-*) of heldout22-11's kind (4-bit
# bf16 fused checkpointed, forward and backward over): qwen3 h256 4 x 2 heads, 2 layers, I 768, V
# 512 tied, 4-bit, bf16, fused, LoRA r=64 on v/o/gate/up/down, 3 x 128 unpacked, checkpointed,
# unchunked, adam; one knob at a time: float base, r=8, v/o, gate/up/down, blockwise, not
# checkpointed, chunk 128, qwen2; and a qwen3 h384 6 x 3 heads I 1,024 V 1,024 untied 2 x 192
# family (base, float base, r=8, not checkpointed). Each in three processes (--processes 3); 6
# of 13 measured (the machine shared), the rest not measured.
# in_sample_round23_planner24b: new hand-made cheap twins (mech24b-*) of heldout23-11's kind
# (float32 checkpointed one layer, LoRA on o_proj alone, backward under) and heldout23-08's
# (float32 fused, 3 layers with the top 2 adapted, q/gate, backward over): qwen3 h256 4 x 1 heads,
# one layer, I 1,152, V 512 tied, float32, blockwise, LoRA r=16 on o_proj, 3 x 128 unpacked,
# checkpointed, accumulation 2, unchunked, adamw; one knob at a time: q alone, v alone, not
# checkpointed, accumulation 1, fused, 2 layers; and a second family (3 layers, V 512 untied,
# fused, not checkpointed, 2 x 256, chunk 128, adam, q/gate on the top 2) with all layers
# adapted, q alone and gate alone. Groundwork: no planner term. Each in three processes
# (--processes 3).
# in_sample_round23_planner24a: new hand-made cheap twins (mech24a-*) of heldout23-03/23-10's kind
# (float32 one-layer DoRA, backward under by 14.4% and 7.3%): qwen3 h256 4 x 4 heads, one layer,
# I 1,024, V 1,024 untied, float32, blockwise, DoRA r=16 alpha 32 on all seven, 2 x 128 packed,
# not checkpointed, unchunked, adamw8bit; one knob at a time: LoRA (DoRA's own cost is the
# difference), q/k/v/o, gate/up/down, q, down, fused, checkpointed, bf16 (boundary); and a qwen3
# h128 4 x 4 heads I 512 family (fused, checkpointed, DoRA r=4 on q/k/v/o/gate/down, 2 x 128
# unpacked, adafactor) with LoRA and not checkpointed. Each in three processes (--processes 3).
# in_sample_round23_planner25c: new hand-made cheap twins (mech25c-*) of heldout23-08's kind
# (float32 fused, not checkpointed, 3 layers with the top 2 adapted, LoRA on q/gate, backward
# over; planner24b's mech24b-08..11): qwen3 h256 4 x 1 heads, I 1,152, V 512 untied, float32,
# fused, LoRA r=16 on gate/down, 2 x 256 unpacked, chunk 128, adam; one knob at a time: gate/up,
# q/gate unchunked, tied, on a 2-layer model, blockwise, o/gate at 1 x 512; and a second family
# (qwen2 h192 3 x 1 heads, I 1,152, V 1,024 tied, r=8, unchunked, adamw) with q/gate, gate
# alone, gate/down and k/o (the boundary rows: gate/down, gate/up, k/o). Each in three
# processes (--processes 3).
# in_sample_round23_planner25b: new hand-made cheap twins (mech25b-*) of heldout23-11's kind
# (float32 checkpointed, one adapted layer, attention adapters only, backward under), beside
# planner24b's mech24b-01..07 (not re-measured): a qwen2 h192 6 x 2 heads family (one layer,
# I 512, V 512 untied, float32, fused, LoRA r=16 on o_proj, 2 x 160 unpacked, checkpointed,
# accumulation 2, unchunked, adamw) with v alone, not checkpointed, 2 layers with the top one
# adapted, 2 layers both adapted and bf16 (boundaries); on mech24b-01's qwen3 h256 family k
# alone, 2 layers with the top one adapted, chunk 128, bf16 (boundary) and DoRA; and a qwen3
# h128 2 x 1 heads, I 896, 1 x 256, q alone shape. Each in three processes (--processes 3).
# in_sample_round23_planner25a: new hand-made cheap twins (mech25a-*) of the float32 one-layer
# MLP backward with gate_proj and up_proj adapted (heldout23-03's kind), LoRA: the base is
# in_sample_round23_planner24a's LoRA twin (qwen3 h256 4 x 4 heads, one layer, I 1,024, float32,
# blockwise, r=16 on all seven, 2 x 128 packed, not checkpointed, adamw8bit) with V 2,048; one
# knob at a time from V 1,024: I 512, gate/up/down, gate/up, q/gate/down and q/up/down (the
# boundary), 2 layers (all or the top adapted), bf16, checkpointed; a qwen3 h128 I 512
# family at T 384 (3 x 128 packed, fused, r=8, adamw) with gate/up/down and DoRA; heldout23-10's
# kind (checkpointed, gate/down without up) in mech24a-11's shape: gate/down, q/gate/down,
# q/k/v/o/gate, I 1,024, bf16, 2 layers, and the h256 family with q/gate/down; and four rows
# predicted before measuring (qwen2 h192 3 x 1 heads, I 768, V 512 tied, 1 x 384, r=8, adam:
# k/o/gate/up and gate/up/down, checkpointed blockwise k/gate/down and DoRA v/gate/down). Each
# in three processes (--processes 3).
# in_sample_round23_planner25d: new hand-made cheap twins (mech25d-*) of heldout22-11's kind (bf16
# checkpointed stack with gate/up/down adapted, its lowest recomputed layer holding less than the
# upper count), beside in_sample_round22_planner23c's (whose 7 unmeasured rows planner25d
# measured): mech23c-01's shape with 3 layers, with q_proj added (the lowest keeps q's side) and
# in float32 (boundary); mech23c-03's with 3 layers; and a qwen3 h192 3 x 1 heads, I 768, V 512
# tied, float base, r=64, 2 x 128, adamw family with 3 and 2 layers. Each in three processes
# (--processes 3).
# in_sample_round24_planner26a: new hand-made cheap twins (mech26a-*) of heldout24-03's kind (bf16
# checkpointed, one adapted layer, attention adapters only, backward over), the bf16 side of
# planner25b's (its mech25b-06/-10 stored): a qwen3 h384 6 x 2 heads family (one layer, I 928, V 512
# untied, bf16, fused, LoRA r=8 on o_proj, 1 x 256 unpacked, checkpointed, accumulation 1,
# unchunked, adamw) with q alone, v alone, q/k/v/o, not checkpointed and float32 (boundaries),
# 2 layers with the top one adapted, blockwise, 2 x 128 and I 1,536; a qwen2 h256 4 x 2 heads,
# I 1,024 family (o, q alone, 2 x 128); and a qwen3 h512 8 x 2 heads shape (I 1,216 and 2,048).
# Each in three processes (--processes 3).
# in_sample_round24_planner26b: new hand-made cheap twins (mech26b-*) of heldout24-00's kind
# (float32 DoRA r=64 on k/v/o/gate/up/down of both layers of a 2-layer checkpointed stack, fused,
# 2 x 128 unpacked, accumulation 2, SGD; over): a qwen3 h256 8 x 4 heads, I 768, V 512 untied
# family with one knob at a time: LoRA, attention-only (k/v/o), MLP-only (gate/up/down), r=8,
# AdamW, accumulation 1, not checkpointed (boundaries), I 1,024 and its LoRA twin; a qwen3 h128
# 4 x 2 heads, I 512 family with LoRA, r=8, not checkpointed, I 1,024 and its LoRA twin; and two
# rows predicted before measuring (qwen2 h192 q/gate/up/down r=16 1 x 256; qwen3 h256 3 layers
# gate/up r=32 2 x 96, accumulation 1). Each in three processes (--processes 3).
# in_sample_round25_planner27a: new hand-made cheap twins (mech27a-*) of heldout25-02's kind
# (float32 one-layer checkpointed LoRA r=4 on all seven, fused, packed, accumulation 2,
# unchunked, AdamW; backward under, one process of three racing high): a qwen3 h64 2 x 1 heads,
# I 384, V 512 tied, 1 x 256 family with gate/up/down, gate/up, q/k/v/o/gate/up, not
# checkpointed (boundary), I 768 and accumulation 1; and a qwen2 h128 4 x 2 heads, I 640,
# 1 x 128 family (all seven, gate/up/down, gate/up, not checkpointed). Each in three processes
# (--processes 3).
# in_sample_round25_planner28b: new hand-made cheap twins (mech28b-*) of planner26a's open kind
# (bf16 checkpointed, one adapted layer, q_proj or k_proj adapted, no MLP adapter: over at 256
# tokens, right at 512+): mech26a-01's qwen3 h384 6 x 2 heads, I 928 shape with q alone at
# 1 x 128 and 1 x 512, k alone at 1 x 256 and 1 x 512, q/k/v/o at 1 x 128 and 1 x 512, and q alone
# with 2 layers (top adapted), float32 and not checkpointed (boundaries); and mech26a-10's qwen2
# h256 4 x 2 heads, I 1,024 shape with q alone at 1 x 128 and 1 x 512 and k alone at 1 x 256.
# Each in three processes (--processes 3).
# in_sample_round25_planner28c: new hand-made cheap twins (mech28c-*) of planner25a's float32
# one-layer gate/up/down rows (lowest_gate_up_buffers' race: taken by the qwen3 h256/h128
# families' measured runs, not by mech25a-22's qwen2 h192 3 x 1 heads one): the qwen2 h192 family
# (I 768, V 512 tied, 1 x 384, fused, r=8, adam) with packed, qwen3, untied, I 1,024, 4 x 4
# heads, adamw and gate/up (boundary), and the qwen3 h128 4 x 4 heads, I 512 family (3 x 128
# packed, adamw) with qwen2, unpacked, tied and k/gate/up. Each in three processes
# (--processes 3).
# in_sample_round25_sweep28 (planner28s): 12 configurations drawn by the held-out generator under
# an in-sample seed (_planner_draw.py's --draw-sample28) on the planner after session 13's terms
# (planner25a-d, planner26a-b), each measured in three processes and scored by the highest;
# constants may be fitted on it.
# in_sample_round26_planner29a: new hand-made cheap twins (mech29a-*) of sweep28-10's kind
# (Adafactor's update over past 20 tensors: the second temporaries are held by the chains
# MLX's breadth-first tape leaves in flight, planner.reducing_chains_in_flight, not the 20
# largest), 1 x 64 or 1 x 32 tokens so the update sets the peak: a qwen3 h64 2 x 1 heads, I 256,
# V 512 tied, q/gate/up/down r=64 bf16 family at 2 (16 tensors, boundary), 3, 4 and 5 layers,
# with AdamW and SGD (boundaries) and all seven in float32; and a qwen2 h128 4 x 2 heads, I 384
# family with q/v/up/down r=32 float32 at 2 (boundary) and 3 layers, AdamW (boundary), and all
# seven r=16 bf16 at 2 and 3 layers. Each in three processes (--processes 3).
# in_sample_round26_planner29b: new hand-made cheap twins (mech29b-*) of heldout26-07's kind (a
# 4-bit float32 base, four checkpointed layers, LoRA on q/v/o/gate/down without up_proj, fused,
# packed, unchunked loss, adamw8bit; under at the loss moment, forward and backward): a qwen3
# h128 4 x 4 heads, I 640, V 4,096 tied, 1 x 384, r=16 family with a float base, gate/up/down,
# no MLP adapter, not checkpointed, a chunked loss (128), 2 layers and an untied head; and a
# qwen2 h192 3 x 1 heads, I 896, V 8,192 tied, 1 x 256 family with a float base, 2 layers and
# I 1,792; then, predicted before measuring, the first family in bf16 and with the top layer
# alone adapted, and the second at 1 x 512. Each in three processes (--processes 3).
# in_sample_round27_planner30a: new hand-made cheap twins (mech30a-*) of heldout27-02's kind (a
# float32 one-layer DoRA on k/v/up_proj without gate_proj, not checkpointed, blockwise, 2 x 384
# unpacked, accumulation 2, loss chunk 128, adamw8bit; under in the forward and backward): a
# qwen3 h256 4 x 4 heads, I 1,024, V 512 tied, 2 x 384 family with LoRA, up alone, gate/up, v
# alone (boundary), fused, 2 layers, bf16 (boundary) and 1 x 128; and a qwen3 h128 4 x 4 heads,
# I 2,048, 1 x 256 family with LoRA, up alone, 2 x 384 and bf16 (T x I against I x H apart);
# then, predicted before measuring, a qwen2 h192 3 x 1 heads, I 896, 1 x 384 family (q/up, v/o/up
# fused, up alone at 2 x 256, k/up/down) and k/v/up/down (h256), up/down (h128). Each in three
# processes (--processes 3).
# in_sample_round29_planner31c: new hand-made cheap twins (mech31c-*) of planner30a's open
# kind, the forward of one float32 adapted layer, not checkpointed, under in LoRA and DoRA alike
# (mech30a-02/-11 LoRA k/v/up 1.9-2.1 T x I): a qwen3 h256 4 x 4 heads, I 1,024, V 512 tied,
# 2 x 384 family (mech30a-02's) with LoRA on k alone, v/o, k/up, k/up/down, k/gate (boundary:
# priced), k/up fused, unchunked, in bf16 (boundary) and on 2 layers (boundary), DoRA on k; a
# qwen2 h192 3 x 1 heads, I 896, 1 x 384 family (mech30a-15's) with LoRA k, q/up and DoRA
# v/up; a qwen3 h128 4 x 4 heads, I 2,048, 1 x 256 family (mech30a-11's) with LoRA q and
# v/up/down. Each in three processes (--processes 3).
# in_sample_round29_planner31a: new hand-made cheap twins (mech31a-*) of heldout29-10's kind (a
# bf16 one-layer LoRA on q/v/gate/up/down, 4-bit, not checkpointed, fused, 1 x 512 packed,
# accumulation 2, unchunked, adamw8bit; the MLP backward under by one or two float32 T x I, the
# MLX CPU race's levels): a qwen2 h256 4 x 2 heads, I 1,536, V 512 tied, 4-bit family with no
# 4-bit, blockwise, gate/up/down alone, accumulation 1, float32, 2 layers, checkpointed and
# q/v/gate/up (no down_proj) one knob at a time; and a qwen3 h128 4 x 2 heads, I 768, V 512
# untied, 2 x 256 family (k/o/gate/up/down) with 4-bit, gate/up/down alone, float32 and
# checkpointed. Each in three processes (--processes 3).
# in_sample_round30_planner32c: new hand-made cheap twins (mech32c-*) of mech31c-09's open kind
# (planner31c's bf16 boundary: one adapted bfloat16 layer, LoRA k/up, not checkpointed, blockwise;
# its peak 12% over: the backward over by 0.8 float32 T x I, the forward under by 1.0): a qwen3
# h256 4 x 4 heads, I 1,024, V 512 tied, 2 x 384 family (mech31c-09's settings) with k/up, k
# alone, up alone (no attention adapter), k/up fused, k/up/down, v/o/up and 1 x 384; a qwen2 h192
# 3 x 1 heads, I 896, 1 x 384 family with q/up, k alone and q/up fused; a qwen3 h128 4 x 4 heads,
# I 2,048, 1 x 256 family with v/up and q alone; then, predicted before measuring, q/v/up at
# 2 x 256 (h256), v/o/up at 2 x 256 unchunked (qwen2), k/up at accumulation 1 with adamw (h128)
# and DoRA k/up (h256, boundary). Each in three processes (--processes 3).
# in_sample_round30_planner32a: new hand-made cheap twins (mech32a-*) of heldout30-08's kind (a
# float32 one-layer LoRA on all seven, not checkpointed, blockwise, 1 x 384 unpacked, adafactor;
# planner31b's race "family B", whose MLP backward races one float32 T x I over
# lowest_gate_up_buffers' level): a qwen3 h128 4 x 2 heads, I 768, V 1,024 untied family with
# fused, qwen2, DoRA, I 1,152, 2 x 192, gate/up/down alone and k/o/gate/up (boundaries), 2 layers,
# bf16 and checkpointed one knob at a time; a qwen3 h256 4 x 4 heads, I 1,024, 2 x 192 family
# with DoRA and gate/up/down alone; then, predicted before measuring, a qwen2 h192 3 x 1 heads,
# I 896, fused family (LoRA and DoRA) and a qwen3 h192 6 x 2 heads, I 640, q/k/v/gate/up/down,
# 2 x 256 packed row. Each in three processes (--processes 3).
# in_sample_round30_planner32b: new hand-made cheap twins (mech32b-*) of heldout25-02's kind (a
# float32 one-layer checkpointed LoRA on all seven, the MLP backward's high state about one float32
# T x I over the plan, planner27a/28a/31b's family B): a qwen3 h128 4 x 2 heads, I 512, V 512 tied,
# 1 x 256 fused family with q/k/v/o/gate/up (no down_proj), k/gate/up/down, gate/up/down alone
# (boundary), bf16 (boundary), 2 layers with the top one adapted and accumulation 1 one knob at a
# time; and a qwen2 h192 3 x 1 heads, I 768, 2 x 128 blockwise family with q/k/v/o/gate/up,
# gate/up/down alone (boundary), DoRA and 1 x 256 fused. Each in three processes (--processes 3).
# in_sample_round32_planner33a: new hand-made cheap twins (mech33a-*) of heldout31-04's kind (a
# bf16 one-layer checkpointed LoRA on q/k/v/o/gate/down without up_proj, 2 x 128 packed,
# unchunked, adafactor, blockwise; the recomputed lowest layer's backward under by 1.35-1.85
# float32 T x I, the forward by 0.6): a qwen2 h256 4 x 2 heads, I 1,024, V 512 tied family
# (r=64) with gate/down alone, k/gate/down, gate/up/down beside q/k/v/o (the path of
# lowest_gate_up_down16: should not move), r=8, fused, unpacked, 2 layers with the top one
# adapted, a chunked loss (128) and float32 (boundary) one knob at a time; and a qwen3 h192 6 x 2
# heads, I 768 family with gate/down alone and q/k/v/o/gate (no down_proj, boundary). Each in
# three processes (--processes 3).
# in_sample_round32_planner33c: new hand-made cheap twins (mech33c-*) of heldout32-01/-07's kind (a
# bfloat16 one-layer checkpointed LoRA on gate/up without down_proj, chunked loss; the backward
# phase 13-17% under, read, not fitted): a qwen3 h256 4 x 2 heads, I 768, V 2,048 tied, 2 x 256,
# fused, chunk 128 family with gate/up, q/k/v/o/gate/up, gate/up/down (boundary: another path),
# unchunked, chunk 64, 2 layers with the top one adapted, float32 (boundary) and I 2,048 V 512
# (the backward the peak) one knob at a time; and a qwen2 h192 6 x 1 heads, I 1,024, V 1,024
# tied, 3 x 128, blockwise, chunk 64 family with k/v/gate/up, gate/up, k/v/gate/up/down
# (boundary), unchunked and fused. Each in three processes (--processes 3).
# in_sample_round32_planner33b: new hand-made cheap twins (mech33b-*) of heldout31-10's kind
# (planner32b's open kind: family B's recomputed high state, a float32 one-layer checkpointed LoRA
# with an attention adapter and gate/up, under a CHUNKED loss): planner32b's two families with only
# the loss chunk changed, a qwen3 h128 4 x 2 heads, I 512, 1 x 256 fused family at chunk 64, 128,
# 256 (one chunk) and 512 (twice T), with gate/up/down alone and bf16 (boundaries) and
# q/k/v/o/gate/up (no down_proj) at chunk 128; a qwen2 h192 3 x 1 heads, I 768, 2 x 128 blockwise
# family at chunk 64, 256 and 512; and a third, qwen3 h256 4 x 4 heads, I 1,024, 1 x 384 fused,
# unchunked and at chunk 128, 384 (one chunk) and 256 (two uneven chunks, heldout31-10's layout);
# then q/k/v/o/gate/up and gate/up/down (boundary) at chunk 128 (qwen2), q/v/gate/up/down with
# adafactor at chunk 256 (h256: heldout31-10's targets) and bf16 at chunk 128 (qwen2, h256).
# Each in three processes (--processes 3).
GROUPS = ("in_sample", "in_sample_mechanisms", "in_sample_blockwise", "in_sample_blockwise_ckpt",
          "in_sample_round6", "in_sample_round7",
          "in_sample_round7_dora",
          "in_sample_round8_blockwise",
          "in_sample_round8_fused",
          "in_sample_round8_dora",
          "in_sample_round8_swiglu",
          "in_sample_round8_mlp",
          "in_sample_round9_planner10a",
          "in_sample_round9_planner10b",
          "in_sample_round10_planner11L",
          "in_sample_round10_planner11m",
          "in_sample_round10_planner11a",
          "in_sample_round10_planner11q",
          "in_sample_round10_planner11g",
          "in_sample_round11_planner12u",
          "in_sample_round12_planner13v",
          "in_sample_round12_planner13u",
          "in_sample_round12_planner13k",
          "in_sample_round12_planner13L",
          "in_sample_round12_sweep", "in_sample_round12_planner13s",
          "in_sample_round13_planner14b",
          "in_sample_round13_sweep", "in_sample_round13_planner15w",
          "in_sample_round13_planner15p",
          "in_sample_round15_planner16d",
          "in_sample_round16_planner17o",
          "in_sample_round16_planner17f",
          "in_sample_round16_sweep", "in_sample_round16_planner17s",
          "in_sample_round16_planner17q",
          "in_sample_round17_planner18a",
          "in_sample_round18_sweep19", "in_sample_round18_planner19s",
          "in_sample_round18_planner19b",
          "in_sample_round18_planner19a",
          "in_sample_round19_planner20c",
          "in_sample_round19_planner20a",
          "in_sample_round21_planner22a",
          "in_sample_round21_planner22c",
          "in_sample_round21_planner22b",
          "in_sample_round21_planner22d",
          "in_sample_round21_planner22e",
          "in_sample_round21_sweep22",
          "in_sample_round22_planner23a",
          "in_sample_round22_planner23b",
          "in_sample_round22_planner23c",
          "in_sample_round23_planner24b",
          "in_sample_round23_planner24a",
          "in_sample_round23_planner25c",
          "in_sample_round23_planner25b",
          "in_sample_round23_planner25a",
          "in_sample_round23_planner25d",
          "in_sample_round24_planner26a",
          "in_sample_round24_planner26b", "in_sample_round25_planner27a",
          "in_sample_round25_planner28b",
          "in_sample_round25_planner28c",
          "in_sample_round25_sweep28",
          "in_sample_round26_planner29a",
          "in_sample_round26_planner29b",
          "in_sample_round27_planner30a",
          "in_sample_round29_planner31c",
          "in_sample_round29_planner31a",
          "in_sample_round30_planner32c",
          "in_sample_round30_planner32a",
          "in_sample_round30_planner32b",
          "in_sample_round32_planner33a",
          "in_sample_round32_planner33c",
          "in_sample_round32_planner33b",
          "heldout", "heldout_round2", "heldout_round3", "heldout_round4", "heldout_round5",
          "heldout_round6", "heldout_round7", "heldout_round8",
          "heldout_round9", "heldout_round10",
          "heldout_round11", "heldout_round12", "heldout_round13",
          "heldout_round14", "heldout_round15", "heldout_round16",
          "heldout_round17", "heldout_round18", "heldout_round19",
          "heldout_round20", "heldout_round21", "heldout_round22",
          "heldout_round23", "heldout_round24",
          "heldout_round25", "heldout_round26", "heldout_round27", "heldout_round28",
          "heldout_round29", "heldout_round30",
          "heldout_round31", "heldout_round32",
          "heldout_round33")
from _planner_draw import ROUNDS, cost, draw_sets  # noqa: E402  (the generator)

STEPS = 2  # step 1 creates the optimizer state; step 2 runs with everything resident


def sets(c: dict) -> list[str]:
    """The configuration's recipe values. Rounds 1-2 and the first in-sample sets were drawn
    and measured with the fused attention (the only one before train.attention): it stays
    pinned, outside the drawn values, so stored measurements keep their keys. Round 3 and
    in_sample_blockwise carry train.attention in their values, which wins."""
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}"
            for k, v in {"train.attention": "fused", **c["values"]}.items()]


# --------------------------------------------------------------------------- models


def model_dir(c: dict) -> Path:
    """The configuration's tiny model (built once, keyed by its shape), quantized if asked."""
    from mlx_eden.tiny import TinySpec, write_tiny

    key = hashlib.sha1(json.dumps(c["model"], sort_keys=True).encode()).hexdigest()[:10]
    base = WORK / "models" / key
    if not (base / "config.json").exists():
        write_tiny(base, TinySpec(**c["model"]))
    if not c["quant"]:
        return base
    q = WORK / "models" / f"{key}-q{c['quant']}"
    if not (q / "config.json").exists():
        from mlx_eden.backends.mlx.convert import quantize_folder

        quantize_folder(base, q, c["quant"], 64)
    return q


def measure(c: dict) -> dict:
    """In a child process: the measured peak and per-phase peaks of `c`."""
    import mlx_eden.backends.mlx  # noqa: F401  (fast BLAS before mlx.core)
    from mlx_eden.memory.measure import run_profile
    from mlx_eden.recipe import load_recipe

    folder = model_dir(c)
    recipe = load_recipe(None, [f"model.path={folder}"] + sets(c))
    m = run_profile(recipe, folder, STEPS, strict=True, evaluate=False)
    return {"peak": m.peak, "phases": m.phases, "step_seconds": m.step_seconds}


_CACHE_LOCK, _MODEL_LOCK = threading.Lock(), threading.Lock()


def measure_child(c: dict) -> dict:
    """A fresh measurement of `c` in a child process (nothing cached)."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(c)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"{c['name']} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cache_key(c: dict) -> str:
    return json.dumps({k: c[k] for k in ("model", "quant", "values")}, sort_keys=True)


def worst_of(draws: list[dict]) -> dict:
    """`processes` fresh measurements of one configuration as one: the highest peak and each
    phase's highest, since the peak a user can meet is the highest. Why several: MLX's CPU
    scheduler releases an op's inputs from a worker task and strict mode waits for one dispatch
    in ten, so the same configuration peaks up to 17% of the plan apart from one process to
    the next (planner17r; heldout17-11: 39.9, 46.9, 46.9, 43.4 MiB)."""
    phases = {k: max(d["phases"].get(k, 0) for d in draws) for k in draws[0]["phases"]}
    seconds = sorted(d["step_seconds"] for d in draws)[len(draws) // 2]
    return {"peak": max(d["peak"] for d in draws), "phases": phases, "step_seconds": seconds,
            "draw_peaks": [d["peak"] for d in draws]}


def run_child(c: dict, reuse: bool, processes: int = 1) -> dict | None:
    """The stored or a fresh measurement of `c` (the worst of `processes` fresh ones); None
    when `reuse` is "only" and none is stored (--measured-only: report what was measured
    without measuring more)."""
    key = cache_key(c) + (f" x{processes}" if processes > 1 else "")
    with _CACHE_LOCK:
        cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if reuse and key in cache:
        return cache[key]
    if reuse == "only":
        return None
    got = measure_child(c) if processes == 1 else worst_of(
        [measure_child(c) for _ in range(processes)])
    store(key, got)
    return got


def store(key: str, got: dict) -> None:
    """Add one measurement to the cache. --jobs' children finish in any order (the thread lock)
    and several checkouts may share one cache through a symlinked benchmarks/work (the file
    lock): three helpers' read-modify-write cycles lost all 14 rows one of them had stored.
    Written to a temporary file and renamed, so a reader never sees half a file."""
    with _CACHE_LOCK, open(CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
        cache[key] = got
        tmp = CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, CACHE)


# --------------------------------------------------------------------------- comparing


def predict(c: dict) -> dict:
    """The planner's needed peak and phase peaks, from config.json and the recipe alone."""
    from mlx_eden.memory.planner import Settings, estimate
    from mlx_eden.memory.shapes import load_config, shape_from_config
    from mlx_eden.recipe import load_recipe

    folder = model_dir(c)
    shape = shape_from_config(load_config(str(folder))[0])
    e = estimate(shape, Settings.from_recipe(load_recipe(None, [f"model.path={folder}"]
                                                         + sets(c)), shape))
    return {"peak": e.needed, "phase": e.phase, "phases": measured_phases(e)}


def measured_phases(e) -> dict[str, int]:
    """The planner's phase peaks in the profiler's phases (forward, backward, update)."""
    p = e.phases
    return {name: max(v for k, v in p.items() if k.startswith(name))
            for name in ("forward", "backward", "update")}


def compare(c: dict, reuse: bool, processes: int = 1) -> dict | None:
    with _MODEL_LOCK:  # --jobs: two configurations of one shape must not build it at once
        pred = predict(c)
    got = run_child(c, reuse, processes)
    if got is None:
        return None
    return row(c, pred, got)


def row(c: dict, pred: dict, got: dict) -> dict:
    """One configuration's result row: the prediction against the measurement."""
    phases = {}
    for name, value in pred["phases"].items():
        m = got["phases"].get(name)
        if m:
            phases[name] = {"predicted": value, "measured": m, "error": round((value - m) / m, 4)}
    return {"name": c["name"], "model": c["model"], "quant": c["quant"], "settings": sets(c),
            "predicted_peak_bytes": pred["peak"], "measured_peak_bytes": got["peak"],
            "error": round((pred["peak"] - got["peak"]) / got["peak"], 4),
            "predicted_phase": pred["phase"], "phases": phases,
            "step_seconds": round(got["step_seconds"], 2),
            **({"measured_draws_bytes": got["draw_peaks"]} if "draw_peaks" in got else {})}


def repredict_in_sample() -> None:
    """--repredict: every stored in-sample group (and the calibration set) predicted again by
    the current planner against the measurements already in the results JSON; nothing is
    measured (the measurement cache under benchmarks/work is not committed, so --reuse on a
    fresh clone would measure everything again). Held-out groups keep their published rows."""
    result = json.loads(RESULT.read_text())
    data = json.loads(CONFIGS.read_text())
    for group in [g for g in result if g.startswith("in_sample") and g in data]:
        stored = {r["name"]: r for r in result[group]["configs"]}
        rows = []
        for c in data[group]:
            r = stored.get(c["name"])
            if r is None:
                continue
            got = {"peak": r["measured_peak_bytes"], "step_seconds": r.get("step_seconds", 0),
                   "phases": {k: v["measured"] for k, v in r["phases"].items()}}
            if "measured_draws_bytes" in r:  # --processes rows keep every draw
                got["draw_peaks"] = r["measured_draws_bytes"]
            rows.append(row(c, predict(c), got))
        rows.sort(key=lambda r: r["name"])
        before = result[group]["summary"].get("worst_peak_error")
        result[group] = {**result[group], "summary": summary(rows), "configs": rows}
        print(f"{group}: worst {before} -> {result[group]['summary']['worst_peak_error']}",
              result[group]["summary"], flush=True)
    rows = calibration_rows()
    result["calibration_in_sample"] = {**result["calibration_in_sample"],
                                       "summary": summary(rows), "configs": rows}
    print("calibration_in_sample", result["calibration_in_sample"]["summary"], flush=True)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(RESULT)
    print(f"-> {RESULT.relative_to(ROOT)} (in-sample groups re-predicted)")


def compare_all(configs: list[dict], reuse, jobs: int, processes: int = 1):
    """(config, row, seconds) for each configuration, in order; `jobs` children measure at once
    (which of a race's states a run lands in depends on thread timing, so load can move a
    figure by one buffer: see worst_of)."""
    def timed(c):
        t0 = time.perf_counter()
        return c, compare(c, reuse, processes), time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        yield from pool.map(timed, configs)


def keep_published(result: dict) -> None:
    """Each finished held-out round's rows as published (predicted by that round's frozen
    planner) are kept under "heldout_round1_published" (commit 35ec7d5) and
    "heldout_round2_published" (3ac9a48); "heldout" and "heldout_round2" are the same sets
    re-predicted by the current planner, no longer held-out figures."""
    old = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    published = old.get("heldout_round1_published") or (
        old.get("heldout") if "heldout_round2" not in old else None)
    if published:
        result["heldout_round1_published"] = published
    # The results written by the round-2 planner are round 2's published ones.
    second = old.get("heldout_round2_published") or old.get("heldout_round2")
    if second:
        result["heldout_round2_published"] = second


def calibration_rows() -> list[dict]:
    """The planner's original calibration set (benchmarks/memory_profile.py) re-predicted
    against the measurements stored in its results JSON: in-sample too."""
    import memory_profile as mp

    from mlx_eden.memory.planner import Settings, estimate
    from mlx_eden.memory.shapes import load_config, shape_from_config
    from mlx_eden.recipe import load_recipe

    stored = {r["name"]: r for r in json.loads(mp.RESULT.read_text())["configs"]}
    rows = []
    mp.WORK.mkdir(parents=True, exist_ok=True)
    for c in mp.CONFIGS:
        got = stored[c["name"]]
        shape = shape_from_config(load_config(str(mp.model_dir(c["model"], c["quant"])))[0])
        fused = ["train.attention=fused", *c["set"]]  # measured before blockwise existed
        e = estimate(shape, Settings.from_recipe(load_recipe(None, fused), shape))
        phases = {k: {"predicted": v, "measured": got["measured_phases"][k],
                      "error": round((v - got["measured_phases"][k])
                                     / got["measured_phases"][k], 4)}
                  for k, v in measured_phases(e).items() if k in got["measured_phases"]}
        m = got["measured_peak_bytes"]
        rows.append({"name": c["name"], "settings": c["set"], "predicted_peak_bytes": e.needed,
                     "measured_peak_bytes": m, "error": round((e.needed - m) / m, 4),
                     "predicted_phase": e.phase, "phases": phases})
    return rows


def summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    peaks = [abs(r["error"]) for r in rows]
    phases = [abs(p["error"]) for r in rows for p in r["phases"].values()]
    return {"configs": len(rows), "worst_peak_error": max(peaks),
            "median_peak_error": sorted(peaks)[len(peaks) // 2],
            "worst_phase_error": max(phases, default=None),
            "within_5pct": sum(e <= 0.05 for e in peaks),
            "phases_within_10pct": f"{sum(e <= 0.10 for e in phases)} of {len(phases)}"}


def markdown(result: dict, group: str) -> str:
    """One group's rows as the table in benchmarks/README.md."""
    out = ["| configuration | predicted MiB | measured MiB | peak | forward | backward | update |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result[group]["configs"]:
        ph = [f"{r['phases'][k]['error'] * 100:+.1f}%" if k in r["phases"] else "-"
              for k in ("forward", "backward", "update")]
        out.append(f"| {r['name']} | {r['predicted_peak_bytes'] / 2**20:.1f} | "
                   f"{r['measured_peak_bytes'] / 2**20:.1f} | {r['error'] * 100:+.1f}% | "
                   + " | ".join(ph) + " |")
    return "\n".join(out)


def line(r: dict) -> str:
    ph = "  ".join(f"{k[:3]} {v['error'] * 100:+5.1f}%" for k, v in r["phases"].items())
    return (f"{r['name']:14s} predicted {r['predicted_peak_bytes'] / 2**20:8.1f} MiB  measured "
            f"{r['measured_peak_bytes'] / 2**20:8.1f} MiB  error {r['error'] * 100:+5.1f}%   {ph}")


def repeat(names: list[str], data: dict, jobs: int) -> None:
    """Measure named configurations again (fresh processes) into WORK/repeats.json: float32
    peaks vary between identical runs (MLX donates a buffer only when nothing else holds it,
    which depends on thread timing), and the results say by how much."""
    configs = {c["name"]: c for g in GROUPS for c in data.get(g, [])}
    store = json.loads(REPEATS.read_text()) if REPEATS.exists() else {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        got_all = pool.map(lambda n: measure_child(configs[n]), names)
        for name, got in zip(names, got_all, strict=True):
            store.setdefault(name, []).append(got["peak"])
            print(f"{name}: {got['peak'] / 2**20:.2f} MiB", flush=True)
    REPEATS.write_text(json.dumps(store, indent=1))


def repeats_table() -> dict:
    """Every measurement of each repeated configuration, in MiB (the first one is the cached
    one the tables use)."""
    if not REPEATS.exists():
        return {}
    cache = json.loads(CACHE.read_text())
    data = json.loads(CONFIGS.read_text())
    configs = {c["name"]: c for g in GROUPS for c in data.get(g, [])}
    out = {}
    for name, peaks in json.loads(REPEATS.read_text()).items():
        first = cache[cache_key(configs[name])]["peak"]
        out[name] = [round(p / 2**20, 2) for p in [first, *peaks]]
    return out


def measure_groups(data: dict, reuse, only: str | None, jobs: int,
                   cheap_first: bool = False, processes: int = 1) -> dict:
    """Each group's rows and summary (configurations measured or taken from the cache).
    `cheap_first`: measure in order of cost(), so a stopped run has measured the most."""
    result = {}
    for group in [g for g in GROUPS if g in data]:
        if only and group != only.replace("-", "_"):
            continue
        rows, missing = [], []
        order = sorted(data[group], key=cost) if cheap_first else data[group]
        for c, row, seconds in compare_all(order, reuse, jobs, processes):
            if row is None:
                missing.append(c["name"])
                continue
            rows.append(row)
            print(line(row) + f"  ({seconds:.0f}s)", flush=True)
        rows.sort(key=lambda r: r["name"])
        result[group] = {"summary": summary(rows), "configs": rows, "not_measured": missing}
        print(group, result[group]["summary"], flush=True)
    return result


def merge_group(result: dict, group: str) -> None:
    """--only GROUP: write that group's rows into the results JSON, every other group kept as
    it is (the earlier rounds stay as published)."""
    if group not in result:
        return
    old = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    # A run whose cache lacks stored rows (a fresh clone's --measured-only, say) must not
    # replace measured rows with fewer: it wiped round 23's twelve once.
    lost = ({r["name"] for r in old.get(group, {}).get("configs", [])}
            - {r["name"] for r in result[group].get("configs", [])})
    if lost:
        print(f"{group}: {len(lost)} stored row(s) are not in this run (not in the cache); "
              f"the stored group is kept: measure them (--reuse) to rewrite it")
        return
    old[group] = result[group]
    old.setdefault("machine_" + group, result["machine"])
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(old, indent=2) + "\n")
    tmp.replace(RESULT)
    print(f"-> {RESULT.relative_to(ROOT)} ({group})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
        return
    # argparse, so a mistyped flag stops before measuring (hand-parsed, --help once started
    # the whole measurement) and --help prints the module docstring.
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                 usage="%(prog)s [options] (the commands: --help)",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--repredict", "--measured-only", "--reuse", "--cheap-first"):
        ap.add_argument(flag, action="store_true")
    for flag in ("--draw", *ROUNDS):  # the docstring names them; listed, they fill a screen
        ap.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--only", metavar="GROUP")
    ap.add_argument("--repeat", metavar="NAME,NAME")
    args = ap.parse_args()
    flag = next((f for f in ("--draw", *ROUNDS) if getattr(args, f[2:].replace("-", "_"))),
                None)
    if flag:
        draw_sets(flag, CONFIGS)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    data = json.loads(CONFIGS.read_text())
    if args.repredict:
        repredict_in_sample()
        return
    if args.repeat:
        repeat(args.repeat.split(","), data, args.jobs)
        return
    reuse = "only" if args.measured_only else args.reuse
    result = {"benchmark": "planner_heldout", "steps": STEPS, "mode": "strict (mx memory limit 1)",
              "machine": {"platform": platform.platform(), "mlx": metadata.version("mlx"),
                          "mlx_lm": metadata.version("mlx-lm")}}
    started = time.perf_counter()
    result.update(measure_groups(data, reuse, args.only, args.jobs, args.cheap_first,
                                 args.processes))
    if args.only:
        merge_group(result, args.only.replace("-", "_"))
        return
    rows = calibration_rows()
    for r in rows:
        print(line(r), flush=True)
    result["calibration_in_sample"] = {"summary": summary(rows), "configs": rows,
                                       "source": "benchmarks/results/memory_profile.json"}
    print("calibration", result["calibration_in_sample"]["summary"], flush=True)
    from planner_metal_points import rows as metal_rows

    result["metal_points"] = metal_rows()
    result["repeated_measurements_mib"] = repeats_table()
    result["seconds"] = round(time.perf_counter() - started)
    keep_published(result)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(RESULT)
    (WORK / "tables.md").write_text("\n\n".join(f"{g}\n\n{markdown(result, g)}" for g in GROUPS
                                                if g in result) + "\n")
    print(f"-> {RESULT.relative_to(ROOT)} (tables: {(WORK / 'tables.md').relative_to(ROOT)})")


if __name__ == "__main__":
    main()
