"""A/B: does making the blockwise backward's first query block wait for `delta`
(backends/mlx/attention._backward(wait_first=True), round 13: mx.compile's common-subexpression
pass no longer keeps each layer's first-block scores from the forward to the backward) cost step
time? The recomputation compile saved before is done again. Its memory is measured by
benchmarks/planner_heldout.py's strict runs (in_sample_round13_planner14b); this times the
training step (MLX backend, float32).

Both variants run in one process on the same model and batch: A is the shipped formula (the
first block waits), B the one before (it does not). Each is a compiled value_and_grad of the
training loss (blockwise attention, packed rows, not checkpointed, LoRA on every projection)
followed by an AdamW update, timed from call to `mx.eval` of the new parameters, the same way for
both; the order alternates every round. The gradients of A and B are compared first
(bit-identical expected). Load average is recorded at start and end.

    .venv/bin/python benchmarks/first_wait_ab.py                 # tiny + 40m, 7 rounds
    .venv/bin/python benchmarks/first_wait_ab.py --models tiny --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx  # noqa: E402
from _ab import alternate, pooled, summarize, timed_runs, variant_steps, write_json  # noqa: E402
from _common import QWEN2_40M  # noqa: E402

from mlx_eden.backends.mlx import attention as A  # noqa: E402
from mlx_eden.tiny import TinySpec, write_tiny  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "first_wait_ab.json"
MODELS = {"tiny": (dict(), 4, 512), "40m": (QWEN2_40M, 2, 512)}  # (model spec, batch, length)

_before = mx.custom_function(A._forward)
_before.vjp(partial(A._backward, wait_first=False))
VARIANTS = {"A_first_waits": A._attend, "B_no_wait": _before}
LOSS = dict(packed=True, checkpoint=False, chunk=0, blockwise=True)


def run(name: str, rounds: int, root: Path) -> dict:
    spec, B, L = MODELS[name]
    step, identical = variant_steps(write_tiny(root / name, TinySpec(**spec)), B, L, "float32",
                                    LOSS, A, "_attend", VARIANTS)
    times = alternate(step, list(VARIANTS), rounds)
    out = {"batch": B, "length": L, "spec": spec, "gradients_bit_identical": identical,
           **summarize(times, "A_first_waits", "B_no_wait")}
    print(name, json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,40m")
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per variant and model")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--append", action="store_true", help="add this run to --out's runs")
    args = ap.parse_args()
    run_ = timed_runs(run, args.models.split(","), args.rounds, "models")
    runs = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    runs.append(run_)
    write_json(args.out, {"benchmark": "first_wait_ab", "summary": pooled(runs), "runs": runs})
    print("wrote", args.out, pooled(runs))


if __name__ == "__main__":
    main()
