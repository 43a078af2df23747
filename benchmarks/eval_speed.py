"""Evaluation speed: greedy generation tokens/s batched (eval suites' path: mlx-lm's
BatchGenerator on MLX, transformers' generate with left padding on torch) against one prompt at a
time (the anchor, the same backend call with a batch of one), and `choice` items/s (log-likelihood
of every choice, batched, no generation), in one run.

    python benchmarks/eval_speed.py [--backends mlx,torch] [--model tiny|q38m] [--prompts 16]
                                    [--batch 8] [--max-new-tokens 32] [--rounds 2]

Every prompt generates exactly --max-new-tokens tokens (stop tokens ignored), so both paths do the
same work. Rounds alternate the two paths so a shared machine's noise falls on both; ratios are
taken within a round, medians over rounds. Writes benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "eval_speed.json"
MODELS = {"tiny": {}, "q38m": {"hidden": 512, "layers": 12, "heads": 8, "kv_heads": 2,
                               "intermediate": 1536, "vocab": 1024}}


def context(backend: str, model_dir: Path):
    from mlx_eden.backends.base import load_backend
    from mlx_eden.data.render import load_tokenizer
    from mlx_eden.eval.context import EvalContext
    from mlx_eden.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml", [
        f"model.path={model_dir}", "model.dtype=float32", f"train.backend={backend}"])
    impl = load_backend(backend)
    impl.setup(recipe, model_dir)
    return EvalContext(recipe, impl, load_tokenizer(model_dir), model_dir)


def choice_file(folder: Path, n: int) -> Path:
    """n four-way questions from the sample chats: the right answer among three others."""
    from mlx_eden.data.formats import read_jsonl

    recs = read_jsonl(ROOT / "data" / "samples" / "chat" / "test.jsonl")
    pairs = [(r.fields["messages"][0]["content"], r.fields["messages"][1]["content"][:120])
             for r in recs if r.fields["messages"][0]["role"] == "user"]
    path = folder / "choice.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            q, a = pairs[i % len(pairs)]
            choices = [a] + [pairs[(i + k) % len(pairs)][1] for k in (1, 2, 3)]
            f.write(json.dumps({"question": q, "choices": choices, "answer": 0}) + "\n")
    return path


def one_round(ctx, prompts, args, choices: Path) -> dict:
    from mlx_eden.eval.suites import choice
    from mlx_eden.recipe import ChoiceSuite

    n_tokens = len(prompts) * args.max_new_tokens
    t0 = time.perf_counter()
    for p in prompts:
        ctx.backend.generate([p], args.max_new_tokens, set())
    single = n_tokens / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = ctx.generate(prompts, args.max_new_tokens, args.batch, stop=set())
    batched = sum(map(len, out)) / (time.perf_counter() - t0)
    suite = ChoiceSuite(name="c", kind="choice", data=str(choices), batch_size=16)
    t0 = time.perf_counter()
    result = choice.run(ctx, suite)
    items = result["metrics"]["n"] / (time.perf_counter() - t0)
    return {"single_tok_s": single, "batched_tok_s": batched, "ratio": batched / single,
            "choice_items_s": items}


def measure(backend: str, model_dir: Path, args, choices: Path) -> dict:
    from mlx_eden.data.formats import read_jsonl

    ctx = context(backend, model_dir)
    recs = read_jsonl(ROOT / "data" / "samples" / "chat" / "test.jsonl")[: args.prompts]
    prompts = [ctx.prompt(r)[0] for r in recs]
    ctx.generate(prompts[: args.batch], 2, args.batch, stop=set())  # warm-up (first calls)
    ctx.backend.generate([prompts[0]], 2, set())
    rounds = [one_round(ctx, prompts, args, choices) for _ in range(args.rounds)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {"rounds": rounds, "median": med,
            "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts)}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="mlx")
    ap.add_argument("--model", choices=sorted(MODELS), default="tiny")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--choice-items", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import mlx_eden.backends.mlx  # noqa: F401  (MKL before mlx.core loads; see blas.py)
    from mlx_eden.tiny import TinySpec, write_tiny

    started = time.time()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_tiny(Path(tmp) / args.model, TinySpec(**MODELS[args.model]))
        choices = choice_file(Path(tmp), args.choice_items)
        for backend in args.backends.split(","):
            results[backend] = measure(backend, model_dir, args, choices)
            m = results[backend]["median"]
            print(f"{backend:6} {args.model}: one at a time {m['single_tok_s']:8.1f} tok/s | "
                  f"batched x{args.batch} {m['batched_tok_s']:8.1f} tok/s ({m['ratio']:.2f}x) | "
                  f"choice {m['choice_items_s']:7.1f} items/s")
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": time.time() - started,
           "machine": machine(), "settings": vars(args), "results": results}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULT.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(out, indent=2))
    os.replace(tmp_path, RESULT)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
