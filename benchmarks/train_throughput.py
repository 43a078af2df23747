"""Training throughput: `eden-mlx train` against mlx-lm's own trainer (`python -m mlx_lm lora`).

Same locally built Qwen2 models (tiny, ~40M, ~150M), same deterministic chat data with a wide
length spread (30-1000 tokens), same LoRA (all seven projections, every layer), same micro-batch,
one epoch each, tools alternated round by round (the machine is shared: ratios are taken within a
round). Both tools run MLX on the same BLAS: mlx-lm gets MKL through LD_PRELOAD and the same
KMP_BLOCKTIME that our preload sets (blas.KMP_BLOCKTIME), so the ratio measures the trainers, not
the BLAS.

What is counted (both tools alike):
- trained tokens: loss-bearing targets that are real tokens (n - 1 per n-token sample, prompt
  masking off). mlx-lm's own count adds one per sample (its mask covers one padding target past
  the end); we recount its batches with its own `iterate_batches` and check against its printout.
- time: the training steps only (no loading, evaluation or saving), first step excluded
  (one-time set-up); mlx-lm's per-step time is its reported tokens / its reported tok/s.
- peak memory: MLX's allocator peak (mx.get_peak_memory) of the process, and its peak RSS.
- MFU: model FLOPs / time / the fp32 matmul rate measured in this run (see `model_flops`).

Writes benchmarks/results/train_throughput.json and prints a table (see benchmarks/README.md).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (  # benchmarks/ is sys.path[0] when run as python benchmarks/...
    KEYS,
    MLX_LM_STEP,
    MLX_LM_VAL,
    QWEN2_40M,
    QWEN2_150M,
    ROOT,
    TINY,
    blas_env,
    matmul_rate,
    run_stamped,
)

import mlx_eden.backends.mlx  # noqa: F401  (MKL before mlx.core, as in training)

RESULT = ROOT / "benchmarks" / "results" / "train_throughput.json"
MAX_LEN, LR, LOSS_CHUNK = 1024, 1e-4, 1024
# TinySpec fields, training samples (one epoch), rounds per rank, LoRA ranks, micro-batch.
# Sized so the whole run stays near 20 minutes on a shared 2-core box: fewer samples and a
# smaller micro-batch (more steps from the same samples) for the bigger models.
MODELS = {
    "tiny-1.3M": dict(spec=TINY, samples=24, rounds=2, ranks=(8, 16), batch=4,
                      tools=("mlx_lm", "eden_packed", "eden_unpacked")),
    "qwen2-40M": dict(spec=QWEN2_40M, samples=16, rounds=1, ranks=(8, 16), batch=4),
    "qwen2-150M": dict(spec=QWEN2_150M, samples=10, rounds=1, ranks=(16,), batch=2),
}


# ---------------------------------------------------------------------------- data and models

def _target_lengths(n: int) -> list[int]:
    """n lengths spread over a short/long mixture (half 30-200 log-uniform, half 200-1000
    uniform), taken at evenly spaced quantiles so even 8 samples span the range; shuffled."""
    import numpy as np

    out = []
    for q in (np.arange(n) + 0.5) / n:
        if q < 0.5:
            out.append(int(math.exp(math.log(30) + (q / 0.5) * math.log(200 / 30))))
        else:
            out.append(int(200 + (q - 0.5) / 0.5 * 800))
    return [out[i] for i in np.random.default_rng(n).permutation(n)]


def write_chat_data(folder: Path, model_dir: Path, n_train: int, batch: int) -> None:
    """Deterministic multi-turn conversations from the bundled corpus, each grown turn by turn
    until it reaches its target length in this model's tokens."""
    import numpy as np
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    corpus = (ROOT / "mlx_eden" / "assets" / "tokenizer_corpus.txt").read_text().splitlines()
    lines = [x for x in corpus if x.strip() and not x.startswith("```")]
    rng = np.random.default_rng(0)

    def length(messages):
        return len(tok.apply_chat_template(messages, tokenize=True, return_dict=False))

    def conversation(target):
        messages = []
        while not messages or length(messages) < target:
            messages += [{"role": "user", "content": lines[rng.integers(len(lines))]},
                         {"role": "assistant", "content": lines[rng.integers(len(lines))]}]
            while length(messages) < target - 40 and rng.random() < 0.85:
                messages[-1]["content"] += " " + lines[rng.integers(len(lines))]
        while length(messages) > MAX_LEN - 24 and len(messages) > 2:  # nobody truncates
            messages = messages[:-2]
        return messages

    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", batch)):
        rows = [{"messages": conversation(t)} for t in _target_lengths(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def model_facts(model_dir: Path, rank: int) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text())
    d, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, i), (d, i), (i, d)]  # (in, out) per layer
    return {"layers": n, "hidden": d, "vocab": cfg["vocab_size"], "query_width": q,
            "linear_params": n * sum(a * b for a, b in shapes) + cfg["vocab_size"] * d,
            "lora_params": n * sum(rank * (a + b) for a, b in shapes),
            "params_total": n * sum(a * b for a, b in shapes) + cfg["vocab_size"] * d}


def model_flops(facts: dict, lengths: list[int]) -> float:
    """FLOPs of one LoRA training pass over samples of these token lengths, frozen base.

    Per trained position: 2N forward + 2N backward through the activations (no weight
    gradients for the frozen base), N = linear weights incl. the (tied) head; + 6 per adapter
    weight (forward, activation grad, weight grad); plus causal attention inside the sample:
    QK^T and PV are 4 x query_width x (p + 1) FLOPs forward at position p, x3 with backward.
    Norms, activations, softmax and the optimizer are left out (they are not matmuls)."""
    per_token = 4 * facts["linear_params"] + 6 * facts["lora_params"]
    total = 0.0
    for n in lengths:
        positions = n - 1
        attention = 12 * facts["layers"] * facts["query_width"] * positions * (positions + 1) / 2
        total += per_token * positions + attention
    return total


# ---------------------------------------------------------------------------- running the tools

def mlx_lm_batches(model_dir: Path, data: Path, batch: int) -> list[list[int]]:
    """Sample lengths of each of mlx-lm's training batches, from its own dataset classes and
    batch iterator seeded as `mlx_lm lora` seeds it (np.random.seed(seed) at start)."""
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import iterate_batches
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    rows = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    dataset = CacheDataset(ChatDataset(rows, tok, mask_prompt=False))
    np.random.seed(0)
    batches = iterate_batches(dataset, batch, MAX_LEN, loop=True)
    return [[int(n) for n in np.array(lengths)[:, 1]]
            for _, lengths in itertools.islice(batches, len(rows) // batch)]


def run_mlx_lm(model_dir: Path, data: Path, rank: int, work: Path, batches) -> dict:
    iters = len(batches)
    config = {"model": str(model_dir), "train": True, "data": str(data),
              "fine_tune_type": "lora", "optimizer": "adamw", "num_layers": -1,
              "batch_size": len(batches[0]), "iters": iters, "val_batches": 1, "learning_rate": LR,
              "steps_per_report": 1, "steps_per_eval": 10**6, "save_every": 10**6,
              "adapter_path": str(work / "adapter"), "max_seq_length": MAX_LEN,
              "mask_prompt": False, "seed": 0, "grad_checkpoint": False,
              "lora_parameters": {"rank": rank, "scale": 2.0, "dropout": 0.0, "keys": KEYS}}
    (work / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    run = run_stamped(["mlx_lm", "lora", "-c", str(work / "config.yaml")], work, blas_env())
    steps, times, last = [], [], None
    for stamp, line in run["lines"]:
        step = MLX_LM_STEP.match(line)
        if step and last is not None:  # a step's time: since the previous step or validation
            steps.append(step.groups())
            times.append(stamp - last)
        if step or MLX_LM_VAL.match(line):
            last = stamp
    assert [int(s[0]) for s in steps] == list(range(1, iters + 1)), run["text"][-2000:]
    theirs = [sum(b) for b in batches]  # their mask: n targets per sample (one is padding)
    printed = [float(s[2]) * 1000 for s in steps]
    recount = [sum(theirs[: k + 1]) for k in range(iters)]
    assert all(abs(a - b) <= 51 for a, b in zip(printed, recount, strict=True)), (printed, recount)
    widths = [min(1 + 32 * math.ceil(max(b) / 32), MAX_LEN) - 1 for b in batches]
    return {"real_tokens": [sum(n - 1 for n in b) for b in batches], "step_times": times,
            "padding": 1 - sum(sum(n - 1 for n in b) for b in batches)
            / sum(len(b) * w for b, w in zip(batches, widths, strict=True)),
            "peak_bytes": run["peak_bytes"], "mkl": run["mkl"],
            "self_reported_tokens": sum(theirs), "wall": run["wall"],
            "rss_bytes": run["rss_bytes"]}


def eden_overrides(model_dir: Path, data: Path, rank: int, packing: bool, batch: int,
                   lean: bool = False) -> list[str]:
    return [f"model.path={model_dir}", f"adapter.rank={rank}", f"adapter.alpha={2 * rank}",
            "adapter.dropout=0.0", "adapter.layers=-1", f"data.train={data / 'train.jsonl'}",
            f"data.valid={data / 'valid.jsonl'}", "data.test=[]", f"data.max_seq_length={MAX_LEN}",
            f"data.packing={str(packing).lower()}", "data.mask_prompt=false", "train.epochs=1",
            f"train.batch_size={batch}", "train.grad_accumulation=1", f"train.learning_rate={LR}",
            "train.warmup_steps=0", "train.eval_every=0", "train.eval_batches=1",
            "train.save_every=0", "train.log_every=1", "train.backend=mlx",
            f"train.loss_chunk={LOSS_CHUNK}", f"train.grad_checkpoint={str(lean).lower()}"]



def run_eden(model_dir: Path, data: Path, rank: int, packing: bool, batch: int,
             work: Path, lean: bool = False) -> dict:
    from mlx_eden.data.render import load_tokenizer
    from mlx_eden.data.splits import load_splits
    from mlx_eden.recipe import load_recipe
    from mlx_eden.run.train import make_plans

    sets = eden_overrides(model_dir, data, rank, packing, batch, lean)
    cmd = ["mlx_eden.cli", "train", str(ROOT / "recipes/tiny-demo.yaml"), "--output",
           str(work / "run"), "--no-dashboard"]
    run = run_stamped(cmd + [a for s in sets for a in ("--set", s)], work, blas_env())
    events = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "train"]
    recipe = load_recipe(ROOT / "recipes/tiny-demo.yaml", sets)
    tok = load_tokenizer(model_dir)
    plan, _ = make_plans(recipe, load_splits(recipe.data, tok, recipe.train.seed), 0)
    return {"real_tokens": [e["tokens"] for e in steps],
            "step_times": [e["step_time"] for e in steps], "padding": plan.padding_fraction,
            "peak_bytes": int(max(e["peak_memory_gb"] for e in steps) * 1e9),
            "wall": run["wall"], "rss_bytes": run["rss_bytes"]}


# ---------------------------------------------------------------------------- summary

def summarise(run: dict, flops_per_token: float, ceiling: float) -> dict:
    # Step 1 carries one-time set-up (compilation); a run of one step has nothing else.
    skip = 1 if len(run["step_times"]) > 1 else 0
    tokens, times = run["real_tokens"][skip:], run["step_times"][skip:]
    rate = sum(tokens) / sum(times)
    return {"tokens_per_sec": round(rate, 2),
            "tokens_per_sec_all_steps": round(sum(run["real_tokens"]) / sum(run["step_times"]), 2),
            "steps": len(run["step_times"]), "padding_fraction": round(run["padding"], 4),
            "peak_memory_gb": round(run["peak_bytes"] / 1e9, 3),
            "peak_rss_gb": round(run["rss_bytes"] / 1e9, 3),
            "mfu": round(rate * flops_per_token / (ceiling * 1e9), 4),
            **{k: run[k] for k in ("mkl", "self_reported_tokens") if k in run}}


def blas_speedup() -> dict:
    out = {}
    for name, mode in (("default", "mkl"), ("reference", "none")):
        rate, which = matmul_rate(blas_env(mode))
        out[name] = {"matmul_gflops": rate, "blas": which}
    out["speedup"] = round(out["default"]["matmul_gflops"] / out["reference"]["matmul_gflops"], 1)
    return out


# eden_lean: packed + train.grad_checkpoint (recompute each layer in the backward pass), the
# setting for memory rather than speed.
TOOLS = ("mlx_lm", "eden_packed", "eden_unpacked", "eden_lean")
RUNNERS = {
    "mlx_lm": lambda m, d, r, b, w, batches: run_mlx_lm(m, d, r, w, batches),
    "eden_packed": lambda m, d, r, b, w, _: run_eden(m, d, r, True, b, w),
    "eden_unpacked": lambda m, d, r, b, w, _: run_eden(m, d, r, False, b, w),
    "eden_lean": lambda m, d, r, b, w, _: run_eden(m, d, r, True, b, w, lean=True),
}


def bench_model(name: str, plan: dict, root: Path, ceiling: float) -> list[dict]:
    from mlx_eden.tiny import TinySpec, write_tiny

    model_dir = write_tiny(root / name, TinySpec(**plan["spec"]))
    data, batch = root / f"{name}-data", plan["batch"]
    write_chat_data(data, model_dir, plan["samples"], batch)
    batches = mlx_lm_batches(model_dir, data, batch)
    lengths = [n for b in batches for n in b]
    tools, cells = plan.get("tools", TOOLS), []
    for rank in plan["ranks"]:
        facts = model_facts(model_dir, rank)
        flops_per_token = model_flops(facts, lengths) / sum(n - 1 for n in lengths)
        per_round = []
        for r in range(plan["rounds"]):
            work = {t: root / f"{name}-r{rank}-{r}-{t}" for t in tools}
            for w in work.values():
                w.mkdir()
            runs = {t: RUNNERS[t](model_dir, data, rank, batch, work[t], batches)
                    for t in tools}
            per_round.append({t: summarise(runs[t], flops_per_token, ceiling) for t in tools})
            print(f"  {name} r={rank} round {r + 1}: " + ", ".join(
                f"{t} {per_round[-1][t]['tokens_per_sec']:.1f} tok/s" for t in tools), flush=True)
        cells.append(cell_summary(name, rank, batch, facts, flops_per_token, lengths,
                                  per_round))
    return cells


def cell_summary(name, rank, batch, facts, flops_per_token, lengths, per_round) -> dict:
    def ratio(tool, key):
        return round(statistics.median(r[tool][key] / r["mlx_lm"][key] for r in per_round), 3)

    tools = [t for t in TOOLS[1:] if t in per_round[0]]

    return {"model": name, "rank": rank, "micro_batch": batch, "params": facts["params_total"],
            "trainable_lora_params": facts["lora_params"], "samples": len(lengths),
            "sample_tokens": {"min": min(lengths), "mean": round(statistics.mean(lengths)),
                              "max": max(lengths)},
            "flops_per_trained_token": round(flops_per_token),
            "rounds": per_round,
            "ratios": {f"{t}_tokens_per_sec": ratio(t, "tokens_per_sec") for t in tools}
            | {f"{t}_peak_memory": ratio(t, "peak_memory_gb") for t in tools}}


def print_table(cells: list[dict]) -> None:
    """A Markdown table (it goes into benchmarks/README.md as printed): medians over rounds."""
    print("| model | r | tool | trained tok/s | vs mlx_lm | padding | peak GB | vs mlx_lm | MFU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        for tool in (t for t in TOOLS if t in c["rounds"][0]):
            med = {k: statistics.median(r[tool][k] for r in c["rounds"])
                   for k in ("tokens_per_sec", "padding_fraction", "peak_memory_gb", "mfu")}
            tr = c["ratios"].get(f"{tool}_tokens_per_sec", 1.0)
            mr = c["ratios"].get(f"{tool}_peak_memory", 1.0)
            print(f"| {c['model']} | {c['rank']} | {tool} | {med['tokens_per_sec']:.1f} | "
                  f"{tr:.2f}x | {med['padding_fraction']:.1%} | {med['peak_memory_gb']:.2f} | "
                  f"{mr:.2f}x | {med['mfu']:.1%} |")


def quick(plan: dict) -> dict:
    """`--quick`: one round of the first rank on 8 samples (checks that the script still runs;
    the result is printed, not written)."""
    return {**plan, "samples": 8, "rounds": 1, "ranks": plan["ranks"][:1]}


def main(argv: list[str]) -> None:
    """Benchmark the models named in argv (default: all of MODELS); `--quick` as above."""
    from mlx_eden.backends.mlx import probe
    from mlx_eden.commands.doctor import collect

    short = "--quick" in argv
    names = [a for a in argv if a != "--quick"] or list(MODELS)
    started = time.time()
    machine = collect()
    ceiling = machine["mlx_matmul_gflops"]
    cells = []
    with tempfile.TemporaryDirectory(prefix="eden-bench-") as tmp:
        for name in names:
            plan = quick(MODELS[name]) if short else MODELS[name]
            cells += bench_model(name, plan, Path(tmp), ceiling)
    if short:
        print_table(cells)
        return
    ceiling_end = probe.matmul_gflops()
    result = {"benchmark": "train_throughput", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "minutes": round((time.time() - started) / 60, 1), "machine": machine,
              "matmul_ceiling_gflops": {"start": ceiling, "end": round(ceiling_end, 1)},
              "blas": blas_speedup(),
              "settings": {"max_seq_length": MAX_LEN, "lr": LR, "epochs": 1,
                           "lora": "all 7 projections, every layer, scale 2, dropout 0",
                           "eden_loss_chunk": LOSS_CHUNK,
                           "mlx_lm_env": "LD_PRELOAD=libmkl_rt, KMP_BLOCKTIME="
                                         + str(blas_env().get("KMP_BLOCKTIME")),
                           "models": MODELS,
                           "mfu_formula": model_flops.__doc__.split("\n\n")[1].strip()},
              "cells": cells}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print_table(cells)
    b = result["blas"]
    print(f"MLX fp32 matmul: {b['default']['matmul_gflops']} GFLOP/s ({b['default']['blas']}) vs "
          f"{b['reference']['matmul_gflops']} with the bundled reference BLAS: x{b['speedup']}")
    print(f"wrote {RESULT.relative_to(ROOT)} in {result['minutes']} min")


if __name__ == "__main__":
    main(sys.argv[1:])
