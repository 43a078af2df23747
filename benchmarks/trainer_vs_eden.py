"""Whole-run time of `eden-mlx train` (torch backend, `model.dtype: auto`) against a plain
transformers `Trainer` + peft LoRA setup (fp32, as the EPYC team runs it today), on the coder
journey's shape of work: LoRA r=8 / alpha 32 on the attention projections, dropout 0.1, batch 2 x
accumulation 8, lr 2e-4 cosine with 3% warm-up, no checkpointing, max 2048 tokens, one
epoch of seeded synthetic conversations whose code answers vary in length (20-1,400 tokens).

    (a) eden       eden-mlx train recipes/qwen2.5-coder-7b-cpu.yaml --set model.dtype=auto
                   (bf16 compute where the CPU has native bf16, float32 elsewhere)
    (b) eden-fp32  the same with model.dtype=float32 (splits the gain: dtype vs the rest)
    (b') eden-packed  (a) with data.packing=true (the packing mask's cost against its saving)
    (c) trainer    Trainer + peft, fp32, DataCollatorForSeq2Seq, the prompt masked with -100,
                   chat template from the tokenizer (what a user writes from the docs)

Each run is one whole process (imports, loading, the epoch, the final validation pass, the
adapter write), timed from outside; the order of the systems rotates every round. Step times
are read the same way for both: the wall time between consecutive optimizer-step ends
(eden: `elapsed` in metrics.jsonl; Trainer: a callback's clock at `on_step_end`). The final
validation loss is the token-weighted mean cross-entropy over the same validation
conversations for both (eden: the last `eval` event; Trainer: summed in the worker, since
`Trainer.evaluate` averages batch means). Load average and a BLAS rate (a 1024^3 fp32 matmul,
GFLOP/s) are recorded before and after the whole benchmark.

    python benchmarks/trainer_vs_eden.py                 # 3 rounds, 96 conversations (~15 min)
    python benchmarks/trainer_vs_eden.py --rounds 1 --conversations 32 --systems eden,trainer
    python benchmarks/trainer_vs_eden.py --model coder7b-shape --systems eden,trainer  # the 7B's
                                        # proportions (~10 min)

Writes benchmarks/results/trainer_vs_eden.json and prints medians with their spread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "trainer_vs_eden.json"
WORK = ROOT / "benchmarks" / "work" / "trainer_vs_eden"
RECIPE = ROOT / "recipes" / "qwen2.5-coder-7b-cpu.yaml"
SYSTEMS = ("eden", "eden-fp32", "eden-packed", "trainer")
# eden-mlx systems: their --set overrides on top of the recipe
EDEN = {"eden": ["model.dtype=auto"], "eden-fp32": ["model.dtype=float32"],
        "eden-packed": ["model.dtype=auto", "data.packing=true"]}
# The stand-in models (`eden-mlx tiny` flags), chosen with --model.
MODELS = {
    # ~38M parameters: 12 layers of 512 (GQA 8/2 heads of 64), MLP 1536, 1,024-token vocabulary.
    # Attention is 28-41% of a bf16 step here (head_dim 64, short hidden, tiny head).
    "q38m": ["--hidden", "512", "--layers", "12", "--heads", "8", "--kv-heads", "2",
             "--intermediate", "1536", "--vocab", "1024"],
    # Qwen2.5-Coder-7B's proportions, declared before measuring: head_dim 128, 7 query heads
    # per key/value head (28/4), MLP 5.3x hidden (18,944/3,584), untied head, and a vocabulary
    # giving the head about the 7B's share of a token's matmul work (7B: 545M of 7.1G MACs,
    # 7.7%; here 3.7M of 47M, 7.7%): 896 hidden (7 x 128, 1 kv head), MLP 4,736, 3 layers
    # (the 7B has 28; 3 keeps the Trainer's epoch near 2 minutes on 2 cores), vocabulary 4,096.
    "coder7b-shape": ["--hidden", "896", "--layers", "3", "--heads", "7", "--kv-heads", "1",
                      "--intermediate", "4736", "--vocab", "4096", "--untied"],
}
# The coder recipe's training shape, mirrored on the Trainer.
BATCH, ACCUMULATION, MAX_LEN, RANK, ALPHA, DROPOUT, LR = 2, 8, 2048, 8, 32, 0.1, 2e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
SYSTEM_PROMPT = "You are the team's coding agent. Answer with working Python."


# ----------------------------------------------------------------------------- data


def _function(rng: random.Random, i: int) -> list[str]:
    name = rng.choice(["parse", "load", "merge", "score", "render", "check", "split"])
    arg = rng.choice(["rows", "items", "path", "config", "records", "text"])
    lines = [f"def {name}_{arg}_{i}({arg}, limit={rng.randint(1, 99)}):",
             f'    """{name.capitalize()} the {arg} and return what passes."""',
             "    out = []"]
    for k in range(rng.randint(0, 4)):
        var = rng.choice(["item", "row", "value", "entry"])
        op = rng.choice(["strip()", "lower()", "split(',')", "get('id')", "encode()"])
        lines += [f"    for {var}{k} in {arg}[:limit]:",
                  f"        if {var}{k} is not None and len(out) < {rng.randint(2, 500)}:",
                  f"            out.append({var}{k}.{op})"]
    return lines + ["    return out", ""]


def conversation(rng: random.Random, i: int) -> dict:
    """One user request and a code answer of 1-6 functions (20 to ~1,400 tokens)."""
    body = ["import os", "import json", ""]
    for j in range(min(6, int(rng.expovariate(0.9)) + 1)):
        body += _function(rng, i * 10 + j)
    task = rng.choice(["Write", "Refactor", "Fix", "Add tests for"])
    return {"messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{task} the helpers for ticket #{rng.randint(100, 9999)}."},
        {"role": "assistant", "content": "```python\n" + "\n".join(body) + "```"}]}


def write_data(n_train: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = WORK / f"data-{n_train}"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", max(8, n_train // 8))):
        rows = [json.dumps(conversation(rng, i)) for i in range(n)]
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def build_model(name: str = "q38m") -> Path:
    path = WORK / f"model-{name}"
    if not (path / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "mlx_eden.cli", "tiny", str(path), *MODELS[name],
                        "--overwrite"], check=True, cwd=ROOT, capture_output=True)
    return path


# ----------------------------------------------------------------------------- the two tools


def _env(threads: int | None) -> dict:
    """Both tools see the same OpenMP/BLAS thread count (all cores unless --threads)."""
    n = {} if not threads else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return {**os.environ, **n, "TOKENIZERS_PARALLELISM": "false"}


def run_eden(model: Path, data: Path, out: Path, sets: list[str], threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "mlx_eden.cli", "train", str(RECIPE), "--no-dashboard",
           "--output", str(out), "--set", f"model.path={model}",
           "--set", f"data.train={data}/train.jsonl", "--set", f"data.valid={data}/valid.jsonl",
           "--set", "data.test=[]", "--set", "data.split=[]", "--set", "train.epochs=1"]
    for item in sets + ([f"train.num_threads={threads}"] if threads else []):
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env(threads))
    if proc.returncode != 0:
        raise RuntimeError(f"eden-mlx train failed:\n{proc.stderr[-3000:]}")
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "train"]
    info = json.loads((out / "run.json").read_text())
    extra = info["model"]["extra"]
    return {"marks": [e["elapsed"] for e in steps], "phases": info.get("phases"),
            "tokens": sum(e["tokens"] for e in steps),
            "val_loss": [e for e in events if e["event"] == "eval"][-1]["val_loss"],
            "dtype": extra["dtype"], "dtype_reason": extra["dtype_reason"]}


def trainer_rows(tok, path: Path) -> list[dict]:
    """The chat template from the tokenizer; loss on the answer only (-100 on the prompt)."""
    rows = []
    for line in path.read_text().splitlines():
        messages = json.loads(line)["messages"]
        prompt = tok.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                         return_dict=False)
        ids = tok.apply_chat_template(messages, return_dict=False)[:MAX_LEN]
        rows.append({"input_ids": ids, "labels": [-100] * len(prompt) + ids[len(prompt):]})
    return rows


def trainer_worker(model_dir: str, data: str, out: str) -> dict:
    """(c), inside its own process: what the seed's training script does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    train, valid = (trainer_rows(tok, Path(data) / f"{s}.jsonl") for s in ("train", "valid"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    marks, start = [], []

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            start.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter() - start[0])

    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
        learning_rate=LR, num_train_epochs=1, lr_scheduler_type="cosine", warmup_steps=0.03,
        max_grad_norm=1.0, logging_steps=1000, save_strategy="no",
        report_to=[], use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator,
                      callbacks=[Marks()])
    trainer.train()
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(valid), BATCH):
            batch = collator(valid[i:i + BATCH])
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            total += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"))
            count += int((labels != -100).sum())
    model.save_pretrained(out)
    tokens = sum(sum(1 for t in r["labels"][1:] if t != -100) for r in train)
    return {"marks": marks, "tokens": tokens, "val_loss": total / count, "dtype": "float32"}


def run_trainer(model: Path, data: Path, out: Path, threads: int | None) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--trainer-worker",
                           json.dumps([str(model), str(data), str(out)])],
                          cwd=ROOT, capture_output=True, text=True, env=_env(threads))
    if proc.returncode != 0:
        raise RuntimeError(f"Trainer worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver


def blas_gflops() -> float:
    """A 1024^3 float32 matmul in a fresh process (median of 5): the machine's BLAS rate now."""
    code = ("import time,torch;a=torch.randn(1024,1024);ts=[]\n"
            "for _ in range(6):\n t=time.perf_counter();a@a;ts.append(time.perf_counter()-t)\n"
            "ts.sort();print(2*1024**3/ts[3]/1e9)")
    return round(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, check=True).stdout), 1)


def conditions() -> dict:
    return {"load_avg": [round(x, 2) for x in os.getloadavg()], "blas_gflops": blas_gflops(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def one_run(system: str, model: Path, data: Path, rnd: int, threads: int | None) -> dict:
    out = WORK / "runs" / f"{system}-{rnd}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    started = time.perf_counter()
    if system == "trainer":
        got = run_trainer(model, data, out, threads)
    else:
        got = run_eden(model, data, out, EDEN[system], threads)
    wall = time.perf_counter() - started
    marks = got.pop("marks")
    steps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return {"system": system, "round": rnd, "wall_seconds": round(wall, 2),
            "step_seconds": [round(s, 3) for s in steps], "steps": len(marks),
            "step_median": statistics.median(steps) if steps else None,
            "load_avg_after": round(os.getloadavg()[0], 2), **got}


def spread(values: list[float | None]) -> dict | None:
    values = [v for v in values if v is not None]  # a one-step run has no step interval
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "all": [round(v, 3) for v in values]}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for system in dict.fromkeys(r["system"] for r in runs):
        mine = [r for r in runs if r["system"] == system]
        out[system] = {"wall_seconds": spread([r["wall_seconds"] for r in mine]),
                       "step_seconds": spread([r["step_median"] for r in mine]),
                       "val_loss": spread([r["val_loss"] for r in mine]),
                       "dtype": mine[0]["dtype"]}
    if "trainer" in out:  # ratios per round (same round = same machine conditions), then median
        for system in out:
            walls, steps = [], []
            for rnd in sorted({r["round"] for r in runs}):
                pick = {r["system"]: r for r in runs if r["round"] == rnd}
                if system in pick and "trainer" in pick:
                    walls.append(pick["trainer"]["wall_seconds"] / pick[system]["wall_seconds"])
                    if pick["trainer"]["step_median"] and pick[system]["step_median"]:
                        steps.append(pick["trainer"]["step_median"] / pick[system]["step_median"])
            out[system]["speedup_wall_vs_trainer"] = spread(walls)
            out[system]["speedup_step_vs_trainer"] = spread(steps)
    if "eden" in out and "eden-fp32" in out:
        ours, fp32 = out["eden"]["val_loss"]["median"], out["eden-fp32"]["val_loss"]["median"]
        out["eden"]["val_loss_vs_fp32"] = round(ours / fp32 - 1, 5)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conversations", type=int, default=96, help="training conversations")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--threads", type=int, help="threads per tool (default: all cores)")
    ap.add_argument("--model", choices=sorted(MODELS), default="q38m")
    ap.add_argument("--output", type=Path, help="default: benchmarks/results/trainer_vs_eden"
                    ".json (q38m) or trainer_vs_eden_<model>.json")
    ap.add_argument("--trainer-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.trainer_worker:
        print(json.dumps(trainer_worker(*json.loads(args.trainer_worker))))
        return
    args.output = args.output or (RESULT if args.model == "q38m" else
                                  RESULT.with_name(f"trainer_vs_eden_{args.model}.json"))
    model, data = build_model(args.model), write_data(args.conversations)
    systems, runs = args.systems.split(","), []
    before, started = conditions(), time.time()
    for rnd in range(args.rounds):
        for system in systems[rnd % len(systems):] + systems[: rnd % len(systems)]:
            runs.append(one_run(system, model, data, rnd, args.threads))
            r = runs[-1]
            print(f"round {rnd} {system:11s} wall {r['wall_seconds']:6.1f} s  step "
                  f"{r['step_median'] or 0:.2f} s  val {r['val_loss']:.4f}  {r['dtype']}  "
                  f"load {r['load_avg_after']}", flush=True)
            write(args, runs, before, started, None)  # every run: a cut-short benchmark keeps its data
    result = write(args, runs, before, started, conditions())
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {args.output} in {result['seconds']:.0f} s")


def write(args, runs: list[dict], before: dict, started: float, after: dict | None) -> dict:
    """All rounds so far to --output (temp name, then renamed); `complete` once all ran."""
    from mlx_eden.run.rundir import versions

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), "?")
    result = {"benchmark": "trainer_vs_eden", "complete": after is not None,
              "seconds": round(time.time() - started, 1),
              "machine": {"cpu": cpu, "cores": os.cpu_count(), "versions": versions()},
              "conditions": {"start": before, "end": after},
              "settings": {"rounds": args.rounds, "threads": args.threads,
                           "conversations": args.conversations, "model_name": args.model,
                           "model": MODELS[args.model], "batch": BATCH,
                           "accumulation": ACCUMULATION, "max_seq_length": MAX_LEN,
                           "rank": RANK, "alpha": ALPHA, "dropout": DROPOUT,
                           "targets": TARGETS, "recipe": RECIPE.name},
              "summary": summarise(runs), "runs": runs}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.output)
    return result

if __name__ == "__main__":
    main()
