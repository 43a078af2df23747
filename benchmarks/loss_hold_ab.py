"""A/B: does holding the head's bf16 output until the exponentials exist (the unchunked loss,
backends/mlx/chunked_loss.ce_sum(hold_head=True)) cost step time, and is the forward's memory
then the same in every run?

Step time: both variants in one process on the same model and batch (MLX backend, bfloat16,
unchunked loss, LoRA on every layer), A the loss without the hold, B with it (shipped); each
a compiled value_and_grad of the training loss and an AdamW update, timed from call to
`mx.eval` of the new parameters, the order alternating every round (benchmarks/_ab.py).
Gradients of A and B are compared first (bit-identical expected). In float32 the hold does
nothing (the head's output is the float32 logits), so only bf16 is timed.

--race: strict mode (memory limit 1 byte), the loss alone (value_and_grad of ce_sum on a
(T, D) input), the forward's peak in bytes per logit, each variant `--repeats` times at each
of the 10 phases of MLX's CPU dispatch count (strict mode waits only for every 10th dispatch,
mlx/backend/cpu/encoder.h DISPATCHES_PER_TASK: where a release falls in it matters).

    .venv/bin/python benchmarks/loss_hold_ab.py                  # V 32,768, 1 x 256, 7 rounds
    .venv/bin/python benchmarks/loss_hold_ab.py --shapes 1x256x32768,1x512x8192 --rounds 9
    .venv/bin/python benchmarks/loss_hold_ab.py --shapes 1x256x32768,1x512x8192,4x256x16384 --rounds 25
    .venv/bin/python benchmarks/loss_hold_ab.py --race --repeats 2   # forward peaks, both variants
    .venv/bin/python benchmarks/loss_hold_ab.py --whole NAME,NAME --steps 8  # whole steps

--whole: planner_heldout.py configurations by name, each variant in a fresh process, `--steps`
strict training steps (planner_heldout.measure's way), every micro-batch's forward peak (MiB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from _ab import alternate, summarize, timed_runs, variant_steps, write_json  # noqa: E402

from mlx_eden.backends.mlx import chunked_loss as C  # noqa: E402
from mlx_eden.backends.mlx import model as M  # noqa: E402
from mlx_eden.recipe import load_recipe  # noqa: E402
from mlx_eden.tiny import TinySpec, write_tiny  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "loss_hold_ab.json"
VARIANTS = {"A_no_hold": False, "B_hold": True}
# A narrow untied model: the head dominates, as at Qwen's vocabularies, and MLX's CPU bf16
# matmul (no BLAS) keeps a step of 1 x 256 tokens at V 32,768 to a few seconds.
SPEC = dict(hidden=64, heads=2, kv_heads=1, intermediate=256, tied=False)
LOSS = dict(packed=False, checkpoint=False, chunk=0)


def _ce_sum(hold: bool):
    """model.loss_sum's ce_sum with the hold forced on or off (looked up when traced)."""
    return lambda *a, hold_head=False, **k: C.ce_sum(*a, **k, hold_head=hold)


def run(shape: str, rounds: int, root: Path) -> dict:
    B, L, V = (int(x) for x in shape.split("x"))
    step, identical = variant_steps(write_tiny(root / shape, TinySpec(vocab=V, **SPEC)), B, L,
                                    "bfloat16", LOSS, M, "ce_sum",
                                    {v: _ce_sum(hold) for v, hold in VARIANTS.items()})
    times = alternate(step, list(VARIANTS), rounds)
    out = {"batch": B, "length": L, "vocab": V, "spec": SPEC, "dtype": "bfloat16",
           "gradients_bit_identical": identical, **summarize(times, "A_no_hold", "B_hold")}
    print(shape, json.dumps(out), flush=True)
    return out


def race(shape: str, hold: bool, repeats: int) -> list[float]:
    """Strict forward peaks (bytes per logit) of the loss alone, `repeats` x 10 phases."""
    T, D, V = (int(x) for x in shape.split("x"))
    rng = np.random.default_rng(0)
    W = mx.array(rng.standard_normal((V, D)).astype(np.float32) * 0.05).astype(mx.bfloat16)
    x = mx.array(rng.standard_normal((T, D)).astype(np.float32)).astype(mx.bfloat16)
    p = mx.zeros((D, D), mx.bfloat16)
    t, w = mx.array(rng.integers(0, V, (T,))), mx.ones((T,))
    f = mx.compile(mx.value_and_grad(lambda p: C.ce_sum(lambda h, a: h @ a[0].T, x + x @ p, t, w,
                                                        [W], hold_head=hold)))
    mx.eval(W, x, p, t, w)
    limit = mx.set_memory_limit(1)
    peaks = []
    try:
        for k in list(range(10)) * repeats:
            for _ in range(k):  # shift the dispatch count's phase
                mx.eval(mx.array(1.0) + 1)
            loss, g = f(p)
            base = mx.get_active_memory()
            mx.reset_peak_memory()
            mx.eval(loss)
            peaks.append(round((mx.get_peak_memory() - base) / (T * V), 2))
            del loss, g
    finally:
        mx.set_memory_limit(limit)
    return peaks


def whole_child(name: str, hold: bool, steps: int) -> None:
    """In a child process: every forward peak (MiB) of `steps` strict steps of `name`."""
    import planner_heldout as ph

    from mlx_eden.memory.measure import run_profile

    c = next(c for g in json.loads(ph.CONFIGS.read_text()).values() if isinstance(g, list)
             for c in g if isinstance(c, dict) and c.get("name") == name)
    M.ce_sum = _ce_sum(hold)
    folder = ph.model_dir(c)
    m = run_profile(load_recipe(None, [f"model.path={folder}"] + ph.sets(c)), folder, steps,
                    strict=True, evaluate=False)
    print(json.dumps([round(s.peak / 2**20, 2) for s in m.samples if s.phase == "forward"]))


def whole(names: list[str], steps: int) -> dict:
    """{config: {variant: forward peaks}}, each variant in its own process."""
    got = {}
    for name in names:
        for v, hold in VARIANTS.items():
            proc = subprocess.run([sys.executable, __file__, "--child", name, str(int(hold)),
                                   str(steps)], capture_output=True, text=True, check=True)
            got.setdefault(name, {})[v] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(name, v, got[name][v], flush=True)
    return got


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        whole_child(sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="1x256x32768", help="BxLxV (timing) or TxDxV (--race)")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and shape")
    ap.add_argument("--race", action="store_true", help="instead: strict forward peaks")
    ap.add_argument("--repeats", type=int, default=2, help="--race: runs per dispatch phase")
    ap.add_argument("--whole", help="instead: these configurations' whole-step forward peaks")
    ap.add_argument("--steps", type=int, default=8, help="--whole: strict steps per process")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()
    result = json.loads(args.out.read_text()) if args.out.exists() else {
        "benchmark": "loss_hold_ab"}
    if args.whole:
        kept = result.setdefault("whole_step_forward_mib", {"steps": args.steps, "configs": {}})
        kept["configs"].update(whole(args.whole.split(","), args.steps))  # earlier ones kept
    elif args.race:
        shapes = args.shapes if "--shapes" in sys.argv else "640x64x4096,320x64x4096,256x128x32768"
        got = {}
        for s in shapes.split(","):
            got[s] = {v: race(s, hold, args.repeats) for v, hold in VARIANTS.items()}
            counts = {v: {str(x): p.count(x) for x in sorted(set(p))} for v, p in got[s].items()}
            print(s, json.dumps(counts), flush=True)
        result["race_forward_bytes_per_logit"] = {"mlx": mx.__version__, "shapes_TxDxV": got}
    else:
        run_ = timed_runs(run, args.shapes.split(","), args.rounds, "shapes")
        result.setdefault("step_time_runs", []).append(run_)  # every run kept
    write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
