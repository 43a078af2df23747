"""A/B: does making each block's output-gradient slice wait (`mx.depends(dob, prev)`,
backends/mlx/attention._backward(wait_dob=True)) cost step time? Its memory is measured by
benchmarks/planner_heldout.py's strict runs; this times the training step (MLX backend, float32).

Both variants run in one process on the same model and batch: A is the shipped formula (no
wait), B the one with the wait. Each is a compiled value_and_grad of the
training loss (blockwise attention, packed rows, LoRA on every projection) followed by an AdamW
update, timed from call to `mx.eval` of the new parameters, the same way for both; the order
alternates every round (A B, B A, ...). Before timing, the gradients of A and B are compared
(bit-identical expected). Load average is recorded at start and end.

    .venv/bin/python benchmarks/blockwise_wait_ab.py                 # tiny + 40m, 7 rounds
    .venv/bin/python benchmarks/blockwise_wait_ab.py --models tiny --rounds 3
    .venv/bin/python benchmarks/blockwise_wait_ab.py --memory   # strict peaks, A and B
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
import numpy as np  # noqa: E402
from _ab import alternate, summarize  # noqa: E402
from _common import QWEN2_40M  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from mlx_eden.backends.mlx import attention as A  # noqa: E402
from mlx_eden.backends.mlx import model as M  # noqa: E402
from mlx_eden.recipe import load_recipe  # noqa: E402
from mlx_eden.tiny import TinySpec, write_tiny  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "blockwise_wait_ab.json"
# (model spec, batch, length); tiny_mha: KV heads = heads, where the wait changes the memory
MODELS = {"tiny": (dict(), 4, 512), "tiny_mha": (dict(kv_heads=4), 4, 512),
          "40m": (QWEN2_40M, 2, 512)}

_waiting = mx.custom_function(A._forward)
_waiting.vjp(partial(A._backward, wait_dob=True))
VARIANTS = {"A_no_wait": A._attend, "B_wait": _waiting}
MEMORY_GROUP = "in_sample_round8_blockwise"  # benchmarks/planner_heldout_configs.json


def _batch(B: int, L: int, V: int):
    rng = np.random.default_rng(0)
    segments = np.repeat([[0] * 200 + [1] * (L - 200)], B, axis=0)
    return (mx.array(rng.integers(0, V, (B, L))), mx.array(rng.integers(0, V, (B, L))),
            mx.array(np.ones((B, L), np.float32)), mx.array(segments))


def _steps(model_dir: Path, B: int, L: int):
    """One compiled gradient function and optimizer per variant, on one shared model."""
    recipe = load_recipe(None, [f"model.path={model_dir}", "model.dtype=float32",
                                "adapter.rank=8", "adapter.layers=-1"])
    model, _ = M.load_base(model_dir, recipe.model, "float32")
    M.add_adapters(model, recipe)
    arrays = _batch(B, L, model.args.vocab_size)
    loss = partial(M.loss_sum, model, packed=True, checkpoint=False, chunk=0, blockwise=True)
    fns, grads = {}, {}
    for name, attend in VARIANTS.items():
        A._attend = attend  # blockwise_attention looks it up when traced (first call)
        try:
            fn = mx.compile(nn.value_and_grad(model, loss))
            _, g = fn(*arrays)
            mx.eval(g)
        finally:
            A._attend = VARIANTS["A_no_wait"]
        fns[name], grads[name] = fn, dict(tree_flatten(g))
    a, b = grads.values()
    identical = all(mx.array_equal(a[k], b[k]).item() for k in a)

    def step(name: str, opt: optim.Optimizer) -> float:
        t = time.perf_counter()
        _, g = fns[name](*arrays)
        opt.update(model, g)
        mx.eval(model.trainable_parameters(), opt.state)
        return time.perf_counter() - t

    return step, identical


def run(name: str, rounds: int, root: Path) -> dict:
    spec, B, L = MODELS[name]
    step, identical = _steps(write_tiny(root / name, TinySpec(**spec)), B, L)
    opts = {v: optim.AdamW(1e-5) for v in VARIANTS}
    times = alternate(lambda v: step(v, opts[v]), list(VARIANTS), rounds)
    out = {"batch": B, "length": L, "spec": spec, "gradients_bit_identical": identical,
           **summarize(times, "A_no_wait", "B_wait")}
    print(name, json.dumps(out), flush=True)
    return out


def memory_child(name: str, variant: str) -> None:
    """In a child process (strict mode holds for the whole process): one in-sample round-8
    configuration's strict whole-step memory (planner_heldout.measure) with `variant`."""
    import planner_heldout as ph

    A._attend = VARIANTS[variant]
    c = next(c for c in json.loads(ph.CONFIGS.read_text())[MEMORY_GROUP] if c["name"] == name)
    print(json.dumps(ph.measure(c)))


def memory(out: dict) -> dict:
    """{config: {variant: [peak MiB, backward MiB]}} over MEMORY_GROUP, each run in a child."""
    import planner_heldout as ph

    got = {}
    for c in json.loads(ph.CONFIGS.read_text())[MEMORY_GROUP]:
        for v in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--child", c["name"], v],
                                  capture_output=True, text=True, check=True)
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            got.setdefault(c["name"], {})[v] = [round(m["peak"] / 2**20, 2),
                                                round(m["phases"]["backward"] / 2**20, 2)]
            print(c["name"], v, got[c["name"]][v], flush=True)
    return got


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        memory_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,tiny_mha,40m")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and model")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--append", action="store_true", help="add this run to --out's runs")
    ap.add_argument("--memory", action="store_true",
                    help=f"instead: strict peaks of {MEMORY_GROUP}, A and B, into --out")
    args = ap.parse_args()
    if args.memory:
        result = json.loads(args.out.read_text())
        result["memory_strict_mib"] = {"group": MEMORY_GROUP, "columns": ["peak", "backward"],
                                       "configs": memory(result)}
        tmp_out = args.out.with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(result, indent=1) + "\n")
        tmp_out.replace(args.out)
        return
    run_ = {"load_start": os.getloadavg(), "mlx": mx.__version__, "rounds": args.rounds,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        run_["models"] = {m: run(m, args.rounds, Path(tmp)) for m in args.models.split(",")}
    run_["load_end"] = os.getloadavg()
    runs = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    runs.append(run_)
    pooled = {}  # per model: every run's paired B/A ratios together
    for r in runs:
        for m, got in r["models"].items():
            pooled.setdefault(m, []).extend(got["paired_ratio"]["all"])
    summary = {m: {"paired_ratio_median": round(statistics.median(x), 3),
                   "paired_ratio_min": min(x), "paired_ratio_max": max(x), "pairs": len(x)}
               for m, x in pooled.items()}
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps({"benchmark": "blockwise_wait_ab", "summary": summary,
                                   "runs": runs}, indent=1) + "\n")
    tmp_out.replace(args.out)
    print("load", run_["load_start"], "->", run_["load_end"], "wrote", args.out, summary)


if __name__ == "__main__":
    main()
