"""Training throughput of the two mlx-eden backends against the plain transformers Trainer + peft
setup, on the same model and the same tokenized samples, on this machine's CPU.

    (a) torch    mlx-eden's torch backend (backends/torch)
    (b) trainer  transformers `Trainer` + peft `LoraConfig` as the seed describes it: fp32,
                 per-device batch 2, gradient accumulation, DataCollatorForSeq2Seq (the anchor)
    (c) mlx      mlx-eden's MLX backend on the CPU (MKL preloaded)

Every measurement runs in a fresh subprocess; the systems alternate (order rotated each round) so
the shared machine's noise falls on all of them. Throughput is trained (loss-bearing) tokens per
second over the optimizer steps after the first (warm-up, MLX compilation); peak RSS is the
worker's maximum resident set. Speed is reported as ratios to (b), measured in the same run.

    python benchmarks/backends.py [--rounds 2] [--threads 1] [--models tiny,q38m]

Writes benchmarks/results/backends.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "backends.json"
WORK = ROOT / "benchmarks" / "work"
SYSTEMS = ("torch", "trainer", "mlx")
# name -> (TinySpec kwargs, optimizer steps measured after the warm-up step)
MODELS = {
    "tiny": ({}, 30),
    "q38m": ({"hidden": 512, "layers": 12, "heads": 8, "kv_heads": 2, "intermediate": 1536,
              "vocab": 1024}, 8),
}
# The EPYC team's adapter and batch shape (r=8, alpha 32, attention, fp32, batch 2), with less
# accumulation and shorter rows so a measurement takes seconds, not minutes.
BATCH, ACCUMULATION, MAX_LEN, RANK, ALPHA, LR = 2, 2, 512, 8, 32, 2e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


# ----------------------------------------------------------------------------- shared set-up


def recipe_for(model_dir: Path, threads: int):
    from mlx_eden.recipe import load_recipe

    return load_recipe(ROOT / "recipes" / "tiny-demo.yaml", [
        f"model.path={model_dir}", "model.dtype=float32", f"adapter.rank={RANK}",
        f"adapter.alpha={ALPHA}", "adapter.dropout=0.0", "adapter.targets=[attention]",
        f"data.train={ROOT}/data/samples/chat/train.jsonl", "data.valid=[]", "data.test=[]",
        f"data.max_seq_length={MAX_LEN}", "data.packing=false", f"train.batch_size={BATCH}",
        f"train.grad_accumulation={ACCUMULATION}", f"train.learning_rate={LR}",
        f"train.num_threads={threads}"])


def samples_for(recipe, model_dir: Path, steps: int):
    """The first (steps + 1) x batch x accumulation samples of the chat data, tokenized once by
    mlx-eden's pipeline; every system trains on exactly these."""
    from mlx_eden.data.render import load_tokenizer
    from mlx_eden.data.splits import load_splits

    tok = load_tokenizer(model_dir)
    samples = load_splits(recipe.data, tok, recipe.train.seed).train
    return tok, samples[: (steps + 1) * BATCH * ACCUMULATION]


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (r / 2**20) if sys.platform == "darwin" else r / 1024


# ----------------------------------------------------------------------------- workers


def run_eden(backend_name: str, model_dir: Path, steps: int, threads: int) -> dict:
    """(a) or (c): the backend's own train_step over mlx-eden's length-bucketed batches."""
    if backend_name == "mlx":
        import mlx_eden.backends.mlx  # noqa: F401  (MKL before mlx.core, see blas.py)
        from mlx_eden.backends.base import hide_torch_from_transformers

        hide_torch_from_transformers()
    from mlx_eden.backends.base import load_backend
    from mlx_eden.data.batching import BatchPlan

    recipe = recipe_for(model_dir, threads)
    tok, samples = samples_for(recipe, model_dir, steps)
    plan = BatchPlan(samples, BATCH, MAX_LEN, tok.pad_token_id, False, recipe.train.seed)
    impl = load_backend(backend_name)
    impl.setup(recipe, model_dir)
    marks = []  # (wall time, CPU time, trained tokens so far) after each optimizer step
    tokens = 0
    for step in range(1, steps + 2):
        k = (step - 1) * ACCUMULATION
        result = impl.train_step([plan.at(k + i)[1] for i in range(ACCUMULATION)], LR, step)
        tokens += result.tokens
        marks.append((time.perf_counter(), time.process_time(), tokens))
    padding = sum(b.padding_fraction for b in map(plan.batch, range(len(plan)))) / len(plan)
    return {"marks": marks, "loss": result.loss, "padding": padding}


def run_trainer(model_dir: Path, steps: int, threads: int) -> dict:
    """(b): transformers Trainer + peft, configured the way the seed trains on a CPU."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    recipe = recipe_for(model_dir, threads)
    tok, samples = samples_for(recipe, model_dir, steps)
    rows = [{"input_ids": s.ids.tolist(),
             "labels": [int(t) if m else -100 for t, m in zip(s.ids, s.mask, strict=True)]}
            for s in samples]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    counted = {"tokens": 0, "padding": []}
    marks = []

    class Counting(Trainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            labels = inputs["labels"][:, 1:]  # the model shifts labels by one
            counted["tokens"] += int((labels != -100).sum())
            counted["padding"].append(float((inputs["attention_mask"] == 0).float().mean()))
            return super().compute_loss(model, inputs, *args, **kwargs)

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append((time.perf_counter(), time.process_time(), counted["tokens"]))

    args = TrainingArguments(
        output_dir=str(WORK / "trainer-out"), per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION, learning_rate=LR, max_steps=steps + 1,
        lr_scheduler_type="cosine", logging_steps=1000, save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = Counting(model=model, args=args, train_dataset=rows, callbacks=[Marks()],
                       data_collator=DataCollatorForSeq2Seq(tok, padding=True,
                                                            label_pad_token_id=-100))
    out = trainer.train()
    return {"marks": marks, "loss": out.training_loss,
            "padding": statistics.mean(counted["padding"])}


def worker(spec: dict) -> dict:
    model_dir, steps, threads = Path(spec["model_dir"]), spec["steps"], spec["threads"]
    started = time.perf_counter()
    if spec["system"] == "trainer":
        got = run_trainer(model_dir, steps, threads)
    else:
        got = run_eden(spec["system"], model_dir, steps, threads)
    (t0, c0, n0), (t1, c1, n1) = got["marks"][0], got["marks"][-1]
    return {**spec, "tokens_per_sec": (n1 - n0) / (t1 - t0),
            "tokens_per_cpu_sec": (n1 - n0) / (c1 - c0), "measured_tokens": n1 - n0,
            "measured_seconds": t1 - t0, "measured_cpu_seconds": c1 - c0,
            "steps_measured": len(got["marks"]) - 1,
            "peak_rss_mb": peak_rss_mb(), "final_loss": got["loss"],
            "padding_fraction": got["padding"], "wall_seconds": time.perf_counter() - started,
            "load_avg_after": os.getloadavg()[0]}


# ----------------------------------------------------------------------------- driver


def build_models(names: list[str]) -> dict[str, tuple[Path, int]]:
    from mlx_eden.tiny import TinySpec, write_tiny

    out = {}
    for name in names:
        kwargs, steps = MODELS[name]
        path = WORK / f"model-{name}"
        if not (path / "model.safetensors").is_file():
            WORK.mkdir(parents=True, exist_ok=True)
            write_tiny(path, TinySpec(**kwargs))
        out[name] = (path, steps)
    return out


def measure(spec: dict) -> dict:
    """One worker in a fresh interpreter with `threads` BLAS/OpenMP threads."""
    n = str(spec["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        rows = {}
        for system in SYSTEMS:
            mine = [r for r in runs if r["model"] == model and r["system"] == system]
            if mine:
                rows[system] = {
                    "tokens_per_sec_median": statistics.median(r["tokens_per_sec"] for r in mine),
                    "tokens_per_sec_all": [round(r["tokens_per_sec"], 1) for r in mine],
                    "tokens_per_cpu_sec_median": statistics.median(r["tokens_per_cpu_sec"]
                                                                   for r in mine),
                    "peak_rss_mb_max": max(r["peak_rss_mb"] for r in mine),
                    "padding_fraction": statistics.mean(r["padding_fraction"] for r in mine)}
        anchor = rows.get("trainer")
        for row in rows.values():
            for kind in ("tokens_per_sec", "tokens_per_cpu_sec"):
                row[f"{kind}_vs_trainer"] = (row[f"{kind}_median"] / anchor[f"{kind}_median"]
                                             if anchor else None)
        summary[model] = rows
    return summary


def machine() -> dict:
    from mlx_eden.run.rundir import versions

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "versions": versions()}


def print_table(summary: dict, threads: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"LoRA training throughput on the CPU ({threads} thread(s), fp32; "
                  "medians, ratios to the Trainer anchor of the same run)")
    cols = ("model", "system", "trained tok/s", "vs trainer", "tok/CPU-s", "vs trainer ",
            "peak RSS MB", "padding")
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "system") else "right")

    def ratio(x):
        return f"{x:.2f}x" if x else "-"

    for model, rows in summary.items():
        for system, r in rows.items():
            table.add_row(model, system, f"{r['tokens_per_sec_median']:.0f}",
                          ratio(r["tokens_per_sec_vs_trainer"]),
                          f"{r['tokens_per_cpu_sec_median']:.0f}",
                          ratio(r["tokens_per_cpu_sec_vs_trainer"]),
                          f"{r['peak_rss_mb_max']:.0f}", f"{r['padding_fraction']:.0%}")
    Console(width=max(Console().width, 110)).print(table)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per worker (1 on a shared box: see the README)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    models = build_models(args.models.split(","))
    systems = args.systems.split(",")
    runs, started = [], time.time()
    for rnd in range(args.rounds):
        order = systems[rnd % len(systems):] + systems[: rnd % len(systems)]
        for name, (path, steps) in models.items():
            for system in order:
                spec = {"system": system, "model": name, "model_dir": str(path),
                        "steps": steps, "threads": args.threads, "round": rnd}
                runs.append(measure(spec))
                r = runs[-1]
                print(f"round {rnd} {name:5s} {system:8s} {r['tokens_per_sec']:8.1f} tok/s "
                      f"{r['tokens_per_cpu_sec']:8.1f} tok/CPU-s rss {r['peak_rss_mb']:.0f} MB load {r['load_avg_after']:.1f}", flush=True)
    summary = summarise(runs)
    result = {"benchmark": "backends", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "seconds": round(time.time() - started, 1), "machine": machine(),
              "settings": {"threads": args.threads, "rounds": args.rounds, "batch": BATCH,
                           "accumulation": ACCUMULATION, "max_seq_length": MAX_LEN,
                           "rank": RANK, "alpha": ALPHA, "targets": TARGETS, "dtype": "float32",
                           "models": {k: MODELS[k][0] for k in models}},
              "summary": summary, "runs": runs}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, RESULT)
    print_table(summary, args.threads)
    print(f"wrote {RESULT.relative_to(ROOT)} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
