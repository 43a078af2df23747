"""The held-out generator of benchmarks/planner_heldout.py: seeded random configurations over
the planner's whole knob space, and the seeds of each drawn set. A set is drawn once and
committed before anything of it is measured (`planner_heldout.py --draw...`)."""

from __future__ import annotations

import json
import random
from pathlib import Path

HELDOUT_SEED, IN_SAMPLE_SEED = 2211, 7
N_HELDOUT, N_IN_SAMPLE = 10, 10

# Round 2: a fresh held-out draw (same generator, new seed), drawn and committed after the
# round-2 planner code was frozen and before anything of it was measured. Round 1's "heldout"
# stays in the configs and the results as history: its misses named the mechanisms fixed in
# round 2, so re-predicted by the round-2 planner it is no longer a held-out figure.
HELDOUT2_SEED, N_HELDOUT2 = 20261129, 10
# Round 3: the same generator plus the attention knob (train.attention: blockwise, the default
# since round 2, or fused), drawn after the round-3 planner code was frozen. Its seed is the
# first 8 hex digits of that "FROZEN:" commit (fb2efab7abfc), so nobody chose it (a draw with
# an earlier placeholder seed had been printed before the freeze; it is not used).
HELDOUT3_SEED, N_HELDOUT3 = 0xfb2efab7, 10  # = 4214160055
# Round 4: the same generator as round 3, drawn after the round-4 planner code (the load
# phase, the deterministic float32 loss chunk) was frozen; the seed is the first 8 hex digits
# of that "FROZEN:" commit.
HELDOUT4_SEED, N_HELDOUT4 = 0x4d88d440, 12  # FROZEN commit 4d88d440fd9e
# Round 5: the same generator, drawn after the round-5 planner code (the blockwise attention's
# backward: every earlier block's score gradient alive, in the compute dtype, and the dk/dv
# accumulators) was frozen; the seed is the first 8 hex digits of that "FROZEN:" commit.
HELDOUT5_SEED, N_HELDOUT5 = 0x984e97ef, 12  # FROZEN commit 984e97efa15e
# Round 6: the same generator, drawn after the round-6 planner code (the one-block blockwise
# backward after the dq wait in attention._attend_vjp, and our SwiGLU's MLP buffers) was
# frozen; the seed is the first 8 hex digits of that "FROZEN:" commit.
HELDOUT6_SEED, N_HELDOUT6 = 0x9c10e8bf, 12  # FROZEN commit 9c10e8bfddf1
# Round 7: the same generator, drawn after the round-7 planner code (our SwiGLU's three kept
# buffers in the layers between the lowest and the top one) was frozen; the seed is the first
# 8 hex digits of that "FROZEN:" commit.
HELDOUT7_SEED, N_HELDOUT7 = 0x588afc5a, 12  # FROZEN commit 588afc5a3062
# Round 8: the same generator, drawn after the round-8 planner code (the fused attention's
# packed-mask square, DoRA's recomputed MLP backward, the lowest layer's MLP forward, the
# recomputed up/down MLP backward) was frozen; the seed is the first 8 hex digits of that
# "FROZEN:" commit.
HELDOUT8_SEED, N_HELDOUT8 = 0x6a81b6f8, 12  # FROZEN commit 6a81b6f8f05a
# Round 9: the same generator, drawn after the round-9 planner code (the compiled micro-step's
# float32 LoRA sum in a checkpointed forward) was frozen; the seed is the first 8 hex digits of
# that "FROZEN:" commit.
HELDOUT9_SEED, N_HELDOUT9 = 0x63c72b39, 12  # FROZEN commit 63c72b39ecb2
# Round 10: the same generator, drawn after the round-10 planner code (the unchunked bf16 loss
# holding the head's output, packed rows' additive mask, the recomputed fused attention's
# backward, the lowest layer's MLP forward and a lone MLP adapter's backward) was frozen; the
# seed is the first 8 hex digits of that "FROZEN:" commit.
HELDOUT10_SEED, N_HELDOUT10 = 0xc256c296, 12  # FROZEN commit c256c2962a5f
# Round 11: the same generator, drawn after the round-11 planner code (the streamed update's
# transient counted as the tensors in flight) was frozen; the seed is the first 8 hex digits of
# that "FROZEN:" commit.
HELDOUT11_SEED, N_HELDOUT11 = 0x303fc9ac, 12  # FROZEN commit 303fc9acbbfd
# Round 12: the same generator, drawn after the round-12 planner code (Adafactor's update
# temporaries, the end layers' swiglu buffers at the loss, a recomputed upper layer with MLP
# adapters only forming the fused softmax gradient, ...) was frozen; the seed is the first 8 hex
# digits of that "FROZEN:" commit.
HELDOUT12_SEED, N_HELDOUT12 = 0xb0837745, 12  # FROZEN commit b0837745bec3
# Round 13: drawn after the planner code of planner14b's first-block fix, planner15f's
# re-measured blockwise rows and refit, planner15p and planner15w was frozen.
HELDOUT13_SEED, N_HELDOUT13 = 0xebcc6287, 12  # FROZEN commit ebcc62874c24
# Round 14: the same planner as round 13 drawn again (nothing changed in between).
HELDOUT14_SEED, N_HELDOUT14 = 0x0510adbd, 12  # FROZEN commit 0510adbdf3fb
# Round 15: drawn after planner16d (heldout14-04's quantized DoRA norms) was frozen.
HELDOUT15_SEED, N_HELDOUT15 = 0xceebd7c8, 12  # FROZEN commit ceebd7c82855
# Round 16: drawn after planner17f (an adapted gate_proj keeps the swiglu ends) and planner17q
# (a DoRA layer's first-forward norms; the lowest layer's DoRA input gradient) were frozen.
HELDOUT16_SEED, N_HELDOUT16 = 0x395805b4, 12  # FROZEN commit 395805b4f113
# Round 17: the same planner as round 16 drawn again (nothing changed in between).
HELDOUT17_SEED, N_HELDOUT17 = 0x0ac4aa78, 12  # FROZEN commit 0ac4aa78178c
# Round 18: drawn after planner18a (a recomputed lowest float32 layer adapting gate/up/down) was
# frozen; measured with --processes 3 and scored by the highest of the three.
HELDOUT18_SEED, N_HELDOUT18 = 0x68dd6ad5, 12  # FROZEN commit 68dd6ad592b5
# Round 19: drawn after planner19a (a float32 fused backward's undonated softmax gradient) and
# planner19b (the lowest layer's attention gradients come after its MLP backward) were frozen;
# measured with --processes 3 and scored by the highest of the three.
HELDOUT19_SEED, N_HELDOUT19 = 0xa30b090c, 12  # FROZEN commit a30b090c15b8
# Round 20: drawn after planner20c (bf16 fused layers keep both SwiGLU ends at the loss) and
# planner20b (SGD's update holds two consecutive gradient squares) were frozen; --processes 3.
HELDOUT20_SEED, N_HELDOUT20 = 0x90e4aab4, 12  # FROZEN commit 90e4aab4724f
# Round 21: the round-20 planner drawn again (nothing in mlx_eden/ changed in between).
HELDOUT21_SEED, N_HELDOUT21 = 0x06e6fe97, 12  # FROZEN commit 06e6fe974be7
# Round 22: drawn after planner22a-e (session 12's five terms, priced on in-sample twins of
# rounds 19-21's misses) were frozen; --processes 3.
HELDOUT22_SEED, N_HELDOUT22 = 0xd273aca6, 12  # FROZEN commit d273aca668ec
# Round 23: drawn after planner23a (a recomputed lowest bf16 gate/up/down layer, unchunked loss)
# and planner23b (a checkpointed fused float32 upper layer's output gradient); --processes 3.
HELDOUT23_SEED, N_HELDOUT23 = 0xe70165fc, 12  # FROZEN commit e70165fc7d60
# Round 24: drawn after planner25a-d (session 13's terms, priced on in-sample twins of round 23's
# misses and heldout22-11's kind); --processes 3.
HELDOUT24_SEED, N_HELDOUT24 = 0x952d6c6f, 12  # FROZEN commit 952d6c6f57ed
# Round 25: drawn after planner26a and planner26b (priced on in-sample twins of round 24's two
# misses); --processes 3.
HELDOUT25_SEED, N_HELDOUT25 = 0xff37688c, 12  # FROZEN commit ff37688ca60e
# Round 26: drawn after planner28b (the recomputed bf16 one-layer credit extended to q/k adapters
# at the fused MLP moment) and the race groundwork (planner27a, 28a, 28c); --processes 3.
HELDOUT26_SEED, N_HELDOUT26 = 0x0b20dc13, 12  # FROZEN commit 0b20dc135a58
# Round 27: drawn after planner29a (Adafactor's second update temporaries by MLX's breadth-first
# tape, priced on twins of sweep28-10) and planner29b (a packed row's mask kept by
# checkpointing, priced on twins of heldout26-07's kind); --processes 3.
HELDOUT27_SEED, N_HELDOUT27 = 0x40e46d77, 12  # FROZEN commit 40e46d77a565
# Round 28: drawn after planner30a (the lowest float32 DoRA layer's up_proj buffers without
# checkpointing, priced on twins of heldout27-02's kind); --processes 3.
HELDOUT28_SEED, N_HELDOUT28 = 0xa4a934d7, 12  # FROZEN commit a4a934d788f1
# Round 29: drawn on the same planner as round 28 (no planner change between them), to test
# whether round 28's pass holds on a second draw; --processes 3.
HELDOUT29_SEED, N_HELDOUT29 = 0x06ede4f7, 12  # FROZEN commit 06ede4f7b3b3
# Round 30: drawn after planner31c (a float32 one-layer swiglu forward held without gate_proj)
# and planner31a (the bf16 side of the lowest gate/up/down race, heldout29-10's kind); --processes 3.
HELDOUT30_SEED, N_HELDOUT30 = 0x23cefd99, 12  # FROZEN commit 23cefd99a7b4
# Rounds 31 and 32: two draws frozen one after the other on the same planner (after planner32a,
# float32 all-seven's high level; planner32b, its recomputed side; planner32c, bf16 without
# gate_proj), both before either was measured: does a pass hold on a second draw? --processes 3.
HELDOUT31_SEED, N_HELDOUT31 = 0xf425ad25, 12  # FROZEN commit f425ad25364f
HELDOUT32_SEED, N_HELDOUT32 = 0x0cadb657, 12  # FROZEN commit 0cadb6570c4b
# Round 33: drawn after planner33a (a recomputed bf16 one-layer gate/down without up_proj),
# planner33b (the recomputed float32 high state under a chunked loss too) and planner33c (a
# recomputed bf16 one-layer gate/up beside attention); --processes 3.
HELDOUT33_SEED, N_HELDOUT33 = 0xe0e8e8e1, 12  # FROZEN commit e0e8e8e1a182
# An IN-SAMPLE sweep (planner13s), drawn with the held-out generator under a new seed before
# round 12, to surface the next mechanisms the way a held-out round would: constants may be
# fitted on it; it is not a held-out figure.
SWEEP13_SEED, N_SWEEP13 = 1312, 24
# A second IN-SAMPLE sweep (planner15w), drawn the same way on the code after planner14b's
# blockwise first-block fix, before round 13: constants may be fitted on it.
SWEEP14_SEED, N_SWEEP14 = 1413, 14
# A third IN-SAMPLE sweep (planner17s), drawn the same way on the code after planner16d (the
# round-15 planner), to surface round 16's misses early: constants may be fitted on it.
SWEEP16_SEED, N_SWEEP16 = 1615, 12
# A fourth IN-SAMPLE sweep (planner19s), drawn the same way on the round-18 planner (after
# planner18a) and measured in three processes (--processes 3, the held-out rounds' way since
# round 18), to surface round 19's misses early: constants may be fitted on it.
SWEEP19_SEED, N_SWEEP19 = 1918, 10
# A fifth IN-SAMPLE sweep (planner22s), drawn the same way on the planner after planner22a (the
# lowest layer's up_proj buffers) and planner22c (the undonated softmax-gradient square in every
# upper layer), before round 22, and measured in three processes (--processes 3): constants may
# be fitted on it.
SWEEP22_SEED, N_SWEEP22 = 2221, 12
# A sixth IN-SAMPLE sweep (planner28s), drawn the same way on the planner after session 13's terms
# (planner25a-d, planner26a-b), before round 26, and measured in three processes (--processes 3):
# constants may be fitted on it.
SWEEP28_SEED, N_SWEEP28 = 2821, 12
ROUNDS = {"--draw-round2": ("heldout_round2", HELDOUT2_SEED, N_HELDOUT2, "heldout2", False),
          "--draw-round3": ("heldout_round3", HELDOUT3_SEED, N_HELDOUT3, "heldout3", True),
          "--draw-round4": ("heldout_round4", HELDOUT4_SEED, N_HELDOUT4, "heldout4", True),
          "--draw-round5": ("heldout_round5", HELDOUT5_SEED, N_HELDOUT5, "heldout5", True),
          "--draw-round6": ("heldout_round6", HELDOUT6_SEED, N_HELDOUT6, "heldout6", True),
          "--draw-round7": ("heldout_round7", HELDOUT7_SEED, N_HELDOUT7, "heldout7", True),
          "--draw-round8": ("heldout_round8", HELDOUT8_SEED, N_HELDOUT8, "heldout8", True),
          "--draw-round9": ("heldout_round9", HELDOUT9_SEED, N_HELDOUT9, "heldout9", True),
          "--draw-round10": ("heldout_round10", HELDOUT10_SEED, N_HELDOUT10, "heldout10", True),
          "--draw-round11": ("heldout_round11", HELDOUT11_SEED, N_HELDOUT11, "heldout11", True),
          "--draw-round12": ("heldout_round12", HELDOUT12_SEED, N_HELDOUT12, "heldout12", True),
          "--draw-round13": ("heldout_round13", HELDOUT13_SEED, N_HELDOUT13, "heldout13", True),
          "--draw-round14": ("heldout_round14", HELDOUT14_SEED, N_HELDOUT14, "heldout14", True),
          "--draw-round15": ("heldout_round15", HELDOUT15_SEED, N_HELDOUT15, "heldout15", True),
          "--draw-round16": ("heldout_round16", HELDOUT16_SEED, N_HELDOUT16, "heldout16", True),
          "--draw-round17": ("heldout_round17", HELDOUT17_SEED, N_HELDOUT17, "heldout17", True),
          "--draw-round18": ("heldout_round18", HELDOUT18_SEED, N_HELDOUT18, "heldout18", True),
          "--draw-round19": ("heldout_round19", HELDOUT19_SEED, N_HELDOUT19, "heldout19", True),
          "--draw-round20": ("heldout_round20", HELDOUT20_SEED, N_HELDOUT20, "heldout20", True),
          "--draw-round21": ("heldout_round21", HELDOUT21_SEED, N_HELDOUT21, "heldout21", True),
          "--draw-round22": ("heldout_round22", HELDOUT22_SEED, N_HELDOUT22, "heldout22", True),
          "--draw-round23": ("heldout_round23", HELDOUT23_SEED, N_HELDOUT23, "heldout23", True),
          "--draw-round24": ("heldout_round24", HELDOUT24_SEED, N_HELDOUT24, "heldout24", True),
          "--draw-round25": ("heldout_round25", HELDOUT25_SEED, N_HELDOUT25, "heldout25", True),
          "--draw-round26": ("heldout_round26", HELDOUT26_SEED, N_HELDOUT26, "heldout26", True),
          "--draw-round27": ("heldout_round27", HELDOUT27_SEED, N_HELDOUT27, "heldout27", True),
          "--draw-round28": ("heldout_round28", HELDOUT28_SEED, N_HELDOUT28, "heldout28", True),
          "--draw-round29": ("heldout_round29", HELDOUT29_SEED, N_HELDOUT29, "heldout29", True),
          "--draw-round30": ("heldout_round30", HELDOUT30_SEED, N_HELDOUT30, "heldout30", True),
          "--draw-round31": ("heldout_round31", HELDOUT31_SEED, N_HELDOUT31, "heldout31", True),
          "--draw-round32": ("heldout_round32", HELDOUT32_SEED, N_HELDOUT32, "heldout32", True),
          "--draw-round33": ("heldout_round33", HELDOUT33_SEED, N_HELDOUT33, "heldout33", True),
          "--draw-sample13": ("in_sample_round12_sweep", SWEEP13_SEED, N_SWEEP13, "sweep13",
                              True),
          "--draw-sample14": ("in_sample_round13_sweep", SWEEP14_SEED, N_SWEEP14, "sweep14",
                              True),
          "--draw-sample16": ("in_sample_round16_sweep", SWEEP16_SEED, N_SWEEP16, "sweep16",
                              True),
          "--draw-sample19": ("in_sample_round18_sweep19", SWEEP19_SEED, N_SWEEP19, "sweep19",
                              True),
          "--draw-sample22": ("in_sample_round21_sweep22", SWEEP22_SEED, N_SWEEP22, "sweep22",
                              True),
          "--draw-sample28": ("in_sample_round25_sweep28", SWEEP28_SEED, N_SWEEP28, "sweep28",
                              True)}
# Strict mode waits for work in flight before each op; MLX's CPU quantized matmul is ~40x slower
# than its float one here (memory_profile.py), so tokens per step are capped (smaller still for
# 4-bit bases).
MAX_TOKENS, MAX_TOKENS_4BIT = 1024, 512
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCABS = [512, 1024, 2048, 4096, 8192, 32768, 65536, 151936]


def draw_one(rng: random.Random, attention: bool = False) -> dict:
    """One configuration: a model shape and the recipe values, all drawn from `rng`.
    `attention` (round 3 on) draws train.attention too, last, so the earlier rounds' seeds
    still give their committed configurations."""
    head_dim = rng.choice([32, 64])
    heads = rng.choice([2, 4, 6, 8])
    hidden = heads * head_dim if rng.random() < 0.7 else rng.choice([128, 256, 384, 512])
    kv_heads = rng.choice([k for k in (1, 2, 4, 8) if heads % k == 0])
    arch = rng.choice(["qwen2", "qwen3"])
    model = {"arch": arch, "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
             "layers": rng.randint(1, 4), "intermediate": 64 * rng.randint(hidden // 32,
                                                                           hidden // 16 + 2),
             "vocab": rng.choice(VOCABS), "tied": rng.random() < 0.5}
    if hidden % heads:
        model["hidden"] = heads * head_dim
    quant = 4 if rng.random() < 0.25 else None
    cap = MAX_TOKENS_4BIT if quant else MAX_TOKENS
    seq = rng.choice([64, 128, 192, 256, 384, 512])
    batch = max(1, min(rng.randint(1, 4), cap // seq))
    k = rng.randint(1, 7)
    targets = sorted(rng.sample(PROJ, k), key=PROJ.index)
    rank = rng.choice([4, 8, 16, 32, 64])
    values = {
        "model.dtype": rng.choice(["float32", "bfloat16"]),
        "adapter.type": "dora" if rng.random() < 0.2 else "lora",
        "adapter.rank": rank, "adapter.alpha": 2 * rank,
        "adapter.targets": "[" + ", ".join(targets) + "]",
        "adapter.layers": -1 if rng.random() < 0.7 else rng.randint(1, model["layers"]),
        "data.max_seq_length": seq, "data.packing": rng.random() < 0.5,
        "train.batch_size": batch, "train.grad_accumulation": rng.choice([1, 1, 2]),
        "train.grad_checkpoint": rng.random() < 0.5,
        "train.loss_chunk": rng.choice([0, 0, 64, 128, 256]),
        "train.optimizer": rng.choice(["adamw", "adam", "adamw8bit", "adafactor", "sgd"]),
        "train.backend": "mlx",
    }
    if attention:
        values["train.attention"] = rng.choice(["blockwise", "fused"])
    return {"model": model, "quant": quant, "values": values}


def draw(seed: int, n: int, prefix: str, attention: bool = False) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        c = draw_one(rng, attention)
        c["name"] = f"{prefix}-{k:02d}"
        out.append(c)
    return out


def draw_sets(flag: str, configs: Path) -> None:
    """--draw (round 1, done once) or --draw-round2/3 (each done once, after that round's
    planner code was frozen): write the configurations, committed before anything is measured."""
    if flag == "--draw":
        data = {"drawn_before_measuring": True, "generator": "benchmarks/planner_heldout.py",
                "heldout_seed": HELDOUT_SEED, "in_sample_seed": IN_SAMPLE_SEED,
                "heldout": draw(HELDOUT_SEED, N_HELDOUT, "heldout"),
                "in_sample": draw(IN_SAMPLE_SEED, N_IN_SAMPLE, "in-sample")}
    else:
        data = json.loads(configs.read_text())
        group, seed, n, prefix, attention = ROUNDS[flag]
        if group in data:
            raise SystemExit(f"{group} is already drawn (committed); not redrawing")
        data[f"{group}_seed"] = seed
        data[group] = draw(seed, n, prefix, attention)
    configs.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {configs}")


def cost(c: dict) -> float:
    """A rough order of a configuration's strict-mode step time, for --cheap-first: matmul
    work, x7 in bfloat16 and x20 on a 4-bit base (MLX's CPU kernels; round 2's step times
    follow it within ~3x), plus a fixed per-op part."""
    m, v = c["model"], c["values"]
    per_token = m["layers"] * (4 * m["hidden"] ** 2 + 3 * m["hidden"] * m["intermediate"])
    work = v["train.batch_size"] * v["data.max_seq_length"] * (per_token
                                                                + m["hidden"] * m["vocab"])
    work *= (7 if v["model.dtype"] == "bfloat16" else 1) * (20 if c["quant"] else 1)
    return (work / 1e9 + 20) * v["train.grad_accumulation"]
