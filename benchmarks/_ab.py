"""What the in-process step-time A/Bs share (blockwise_wait_ab.py, loss_hold_ab.py,
packed_mask_ab.py; the first and the last whole command lines, `model_ab_main`): the model and batch, one compiled training step per variant (a module
attribute swapped while it is traced) with its gradients compared bit for bit, both variants
timed the same way, the order alternated every round, the summary (medians, spread, and the
paired B/A ratio of each round's adjacent steps, whose spread is what "no change" looks like on
this machine), and strict-memory runs in child processes. Not a benchmark itself (`make bench`
skips `_*.py`); the caller puts the repository on sys.path first."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import mlx_eden.backends.mlx  # noqa: F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from mlx_eden.backends.mlx import model as M
from mlx_eden.recipe import load_recipe
from mlx_eden.tiny import TinySpec, write_tiny


def batch(B: int, L: int, V: int, packed: bool) -> tuple[mx.array, ...]:
    """Seeded inputs, targets, weights and segments; packed: two samples per row (200 tokens
    and the rest)."""
    rng = np.random.default_rng(0)
    segments = (np.repeat([[0] * 200 + [1] * (L - 200)], B, axis=0) if packed
                else np.zeros((B, L), np.int32))
    return (mx.array(rng.integers(0, V, (B, L))), mx.array(rng.integers(0, V, (B, L))),
            mx.array(np.ones((B, L), np.float32)), mx.array(segments))


def _bits(a: mx.array) -> mx.array:
    return a.view({2: mx.uint16, 4: mx.uint32}[a.itemsize])


def variant_steps(model_dir: Path, B: int, L: int, dtype: str, loss_kwargs: dict,
                  module, attr: str, variants: dict) -> tuple[Callable[[str], float], bool]:
    """(step(variant) -> seconds, loss and gradients bit-identical?): one model with LoRA r=8
    on every layer, one compiled value_and_grad per variant, traced with `module.attr` set to
    the variant's value (restored after; the code under test looks it up when traced), then an
    AdamW update, timed from call to `mx.eval` of the new parameters."""
    recipe = load_recipe(None, [f"model.path={model_dir}", f"model.dtype={dtype}",
                                "adapter.rank=8", "adapter.layers=-1"])
    model, _ = M.load_base(model_dir, recipe.model, dtype)
    M.add_adapters(model, recipe)
    arrays = batch(B, L, model.args.vocab_size, loss_kwargs["packed"])
    loss = partial(M.loss_sum, model, **loss_kwargs)
    shipped = getattr(module, attr)
    fns, got = {}, {}
    for name, swapped in variants.items():
        setattr(module, attr, swapped)
        try:
            fn = mx.compile(nn.value_and_grad(model, loss))
            value, g = fn(*arrays)
            mx.eval(value, g)
        finally:
            setattr(module, attr, shipped)
        fns[name], got[name] = fn, (value, dict(tree_flatten(g)))
    (va, a), (vb, b) = got.values()
    identical = mx.array_equal(_bits(va), _bits(vb)).item() and all(
        mx.array_equal(_bits(a[k]), _bits(b[k])).item() for k in a)
    opts = {v: optim.AdamW(1e-5) for v in variants}

    def step(name: str) -> float:
        t = time.perf_counter()
        _, g = fns[name](*arrays)
        opts[name].update(model, g)
        mx.eval(model.trainable_parameters(), opts[name].state)
        return time.perf_counter() - t

    return step, identical


def timed_runs(run: Callable[[str, int, Path], dict], items: list[str], rounds: int,
               key: str) -> dict:
    """One timing run: `run(item, rounds, tmp)` per item, with the load average at start and
    end."""
    out = {"load_start": os.getloadavg(), "mlx": mx.__version__, "rounds": rounds,
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        out[key] = {x: run(x, rounds, Path(tmp)) for x in items}
    out["load_end"] = os.getloadavg()
    print("load", out["load_start"], "->", out["load_end"], flush=True)
    return out


def strict_child(group: str, name: str) -> None:
    """In a child process (strict mode holds for the whole process): configuration `name` of
    `group` (benchmarks/planner_heldout_configs.json) measured as planner_heldout.py does;
    the caller has set its variant."""
    import planner_heldout as ph

    c = next(c for c in json.loads(ph.CONFIGS.read_text())[group] if c["name"] == name)
    print(json.dumps(ph.measure(c)))


def strict_runs(script: str, group: str, variants: list[str], repeats: int = 1,
                jobs: int = 1) -> dict:
    """{config: {variant: [[peak MiB, backward MiB], ...]}} over `group`, every run a fresh
    `script --child NAME VARIANT`; the variants interleave so load and order fall on both
    alike."""
    import planner_heldout as ph

    names = [c["name"] for c in json.loads(ph.CONFIGS.read_text())[group]]
    todo = [(n, v) for _ in range(repeats) for n in names for v in variants]

    def one(job):
        proc = subprocess.run([sys.executable, script, "--child", *job],
                              capture_output=True, text=True, check=True)
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        return job, [round(m["peak"] / 2**20, 2), round(m["phases"]["backward"] / 2**20, 2)]

    got = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for (n, v), mib in pool.map(one, todo):
            got.setdefault(n, {}).setdefault(v, []).append(mib)
            print(n, v, mib, flush=True)
    return got


def alternate(step: Callable[[str], float], variants: list[str], rounds: int,
              warmup: int = 2) -> dict[str, list[float]]:
    """{variant: seconds of each timed step}: `warmup` untimed steps of each first (optimizer
    state, compilation), then `rounds` rounds in the order A B, B A, A B, ..."""
    for v in variants:
        for _ in range(warmup):
            step(v)
    times = {v: [] for v in variants}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            times[v].append(step(v))
    return times


def summarize(times: dict[str, list[float]], a: str, b: str) -> dict:
    """Per variant median/min/max/all in ms, the ratio of medians B/A and the paired ratios."""
    out = {}
    for v, ts in times.items():
        ms = sorted(t * 1e3 for t in ts)
        out[v] = {"median_ms": round(statistics.median(ms), 1), "min_ms": round(ms[0], 1),
                  "max_ms": round(ms[-1], 1), "all_ms": [round(t * 1e3, 1) for t in ts]}
    out["ratio_B_over_A_median"] = round(out[b]["median_ms"] / out[a]["median_ms"], 3)
    pairs = sorted(y / x for x, y in zip(times[a], times[b], strict=True))
    q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
    out["paired_ratio"] = {"median": round(statistics.median(pairs), 3),
                           "q1": round(q[0], 3), "q3": round(q[2], 3),
                           "all": [round(x, 3) for x in pairs]}
    return out


def pooled(runs: list[dict]) -> dict:
    """Per model, every run's paired B/A ratios together: median, min, max, count."""
    got: dict[str, list[float]] = {}
    for r in runs:
        for m, res in r["models"].items():
            got.setdefault(m, []).extend(res["paired_ratio"]["all"])
    return {m: {"paired_ratio_median": round(statistics.median(x), 3),
                "paired_ratio_min": min(x), "paired_ratio_max": max(x), "pairs": len(x)}
            for m, x in got.items()}


def write_json(path: Path, data: dict) -> None:
    """Write through a temp name, then rename: a stopped run never leaves half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def model_ab_main(doc: str, benchmark: str, result: Path, models: dict, loss: dict, module,
                  attr: str, variants: dict, memory_group: str) -> None:
    """The whole command line of an A/B of two formulas (`variants`, A then B, swapped in as
    `module.attr`) on float32 models (`models`: name -> (TinySpec fields, batch, length)):
    timed steps per model (--models, --rounds; --append adds a run to --out's), or with
    --memory the strict peaks of `memory_group`'s configurations per variant, each in a fresh
    child process of the calling script. Other keys of --out are kept."""
    if sys.argv[1:2] == ["--child"]:
        setattr(module, attr, variants[sys.argv[3]])
        strict_child(memory_group, sys.argv[2])
        return
    a, b = variants
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(models))
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and model")
    ap.add_argument("--out", type=Path, default=result)
    ap.add_argument("--append", action="store_true", help="add this run to --out's runs")
    ap.add_argument("--memory", action="store_true",
                    help=f"instead: strict peaks of {memory_group}, A and B, into --out")
    ap.add_argument("--repeats", type=int, default=2, help="--memory: runs per variant")
    ap.add_argument("--jobs", type=int, default=1, help="--memory: children at a time")
    args = ap.parse_args()
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.memory:
        script = sys.modules["__main__"].__file__
        old["memory_strict_mib"] = {"group": memory_group, "columns": ["peak", "backward"],
                                    "configs": strict_runs(script, memory_group, [a, b],
                                                           args.repeats, args.jobs)}
        write_json(args.out, {"benchmark": benchmark, **old})
        return

    def run(name: str, rounds: int, root: Path) -> dict:
        spec, B, L = models[name]
        step, identical = variant_steps(write_tiny(root / name, TinySpec(**spec)), B, L,
                                        "float32", loss, module, attr, variants)
        out = {"batch": B, "length": L, "spec": spec, "gradients_bit_identical": identical,
               **summarize(alternate(step, [a, b], rounds), a, b)}
        print(name, json.dumps(out), flush=True)
        return out

    run_ = timed_runs(run, args.models.split(","), args.rounds, "models")
    runs = [*old.get("runs", []), run_] if args.append else [run_]
    write_json(args.out, {**old, "benchmark": benchmark, "summary": pooled(runs),
                          "runs": runs})
    print("wrote", args.out, pooled(runs))
