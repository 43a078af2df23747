"""A/B: the packed rows' attention mask on the fused path, a bool mask (A, before round 10) or
the additive float mask in the compute dtype (B, backends/mlx/model.attention_mask as shipped).
MLX's unfused attention applies a bool mask with `where`, whose gradient can hold one more
B x heads x L x L square in the backward (memory/attention.mask_bytes); an additive
mask passes the gradient through. This measures what the change costs in step time and what
it saves in strict memory.

Step time (MLX backend, float32): both variants run in one process on the same model and batch,
each a compiled value_and_grad of the training loss (fused attention, packed rows of two
samples, LoRA on every projection) followed by an AdamW update, timed from call to `mx.eval` of
the new parameters; the order alternates every round (benchmarks/_ab.py). Before timing,
the gradients of A and B are compared (bit-identical expected). Load average at start and end.

    .venv/bin/python benchmarks/packed_mask_ab.py                 # tiny, tiny_mha, 40m_mha
    .venv/bin/python benchmarks/packed_mask_ab.py --models tiny --rounds 3
    .venv/bin/python benchmarks/packed_mask_ab.py --memory --repeats 3 --jobs 2  # strict peaks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
from _ab import alternate, pooled, summarize, write_json  # noqa: E402
from _common import QWEN2_40M  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from mlx_eden.backends.mlx import model as M  # noqa: E402
from mlx_eden.recipe import load_recipe  # noqa: E402
from mlx_eden.tiny import TinySpec, write_tiny  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "packed_mask_ab.json"
# (model spec, batch, length); *_mha: KV heads = heads, where the bool mask's square appears
MODELS = {"tiny": (dict(), 4, 512), "tiny_mha": (dict(kv_heads=4), 4, 512),
          "40m_mha": ({**QWEN2_40M, "kv_heads": 8}, 2, 512)}
VARIANTS = {"A_bool": lambda segments, dtype: M.allowed_pairs(segments),
            "B_additive": M.attention_mask}
MEMORY_GROUP = "in_sample_round10_planner11m"  # benchmarks/planner_heldout_configs.json


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
    loss = partial(M.loss_sum, model, packed=True, checkpoint=False, chunk=0, blockwise=False)
    fns, grads = {}, {}
    for name, mask in VARIANTS.items():
        M.attention_mask = mask  # layer_mask looks it up when traced (first call)
        try:
            fn = mx.compile(nn.value_and_grad(model, loss))
            _, g = fn(*arrays)
            mx.eval(g)
        finally:
            M.attention_mask = VARIANTS["B_additive"]
        fns[name], grads[name] = fn, dict(tree_flatten(g))
    a, b = grads.values()
    identical = all(mx.array_equal(a[k], b[k]).item() for k in a)
    opts = {v: optim.AdamW(1e-5) for v in VARIANTS}

    def step(name: str) -> float:
        t = time.perf_counter()
        _, g = fns[name](*arrays)
        opts[name].update(model, g)
        mx.eval(model.trainable_parameters(), opts[name].state)
        return time.perf_counter() - t

    return step, identical


def run(name: str, rounds: int, root: Path) -> dict:
    spec, B, L = MODELS[name]
    step, identical = _steps(write_tiny(root / name, TinySpec(**spec)), B, L)
    times = alternate(step, list(VARIANTS), rounds)
    out = {"batch": B, "length": L, "spec": spec, "gradients_bit_identical": identical,
           **summarize(times, "A_bool", "B_additive")}
    print(name, json.dumps(out), flush=True)
    return out


def memory_child(name: str, variant: str) -> None:
    """In a child process (strict mode holds for the whole process): one configuration of
    MEMORY_GROUP measured the way planner_heldout.py measures it, with `variant`'s mask."""
    import planner_heldout as ph

    M.attention_mask = VARIANTS[variant]
    c = next(c for c in json.loads(ph.CONFIGS.read_text())[MEMORY_GROUP] if c["name"] == name)
    print(json.dumps(ph.measure(c)))


def memory(repeats: int, jobs: int) -> dict:
    """{config: {variant: [[peak MiB, backward MiB], ...]}}, every run in a fresh child; the
    variants interleave so load and order fall on both alike."""
    import planner_heldout as ph

    names = [c["name"] for c in json.loads(ph.CONFIGS.read_text())[MEMORY_GROUP]]
    todo = [(n, v) for _ in range(repeats) for n in names for v in VARIANTS]

    def one(job):
        proc = subprocess.run([sys.executable, __file__, "--child", *job],
                              capture_output=True, text=True, check=True)
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        return job, [round(m["peak"] / 2**20, 2), round(m["phases"]["backward"] / 2**20, 2)]

    got = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for (n, v), mib in pool.map(one, todo):
            got.setdefault(n, {}).setdefault(v, []).append(mib)
            print(n, v, mib, flush=True)
    return got


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        memory_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,tiny_mha,40m_mha")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and model")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--append", action="store_true", help="add this run to --out's runs")
    ap.add_argument("--memory", action="store_true",
                    help=f"instead: strict peaks of {MEMORY_GROUP}, A and B, into --out")
    ap.add_argument("--repeats", type=int, default=2, help="--memory: runs per variant")
    ap.add_argument("--jobs", type=int, default=1, help="--memory: children at a time")
    args = ap.parse_args()
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.memory:
        old["memory_strict_mib"] = {"group": MEMORY_GROUP, "columns": ["peak", "backward"],
                                    "configs": memory(args.repeats, args.jobs)}
        write_json(args.out, {"benchmark": "packed_mask_ab", **old})
        return
    run_ = {"load_start": os.getloadavg(), "mlx": mx.__version__, "rounds": args.rounds,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        run_["models"] = {m: run(m, args.rounds, Path(tmp)) for m in args.models.split(",")}
    run_["load_end"] = os.getloadavg()
    runs = [*old.get("runs", []), run_] if args.append else [run_]
    write_json(args.out, {**old, "benchmark": "packed_mask_ab", "summary": pooled(runs),
                          "runs": runs})
    print("load", run_["load_start"], "->", run_["load_end"], "wrote", args.out, pooled(runs))


if __name__ == "__main__":
    main()
