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
    .venv/bin/python benchmarks/first_wait_ab.py --memory --repeats 2 --jobs 2  # strict peaks
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlx_eden.backends.mlx  # noqa: E402,F401  (first: MKL before mlx.core, see its blas.py)

# isort: split
import mlx.core as mx  # noqa: E402
from _ab import model_ab_main  # noqa: E402
from _common import QWEN2_40M  # noqa: E402

from mlx_eden.backends.mlx import attention as A  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "first_wait_ab.json"
MODELS = {"tiny": (dict(), 4, 512), "40m": (QWEN2_40M, 2, 512)}  # (model spec, batch, length)

_before = mx.custom_function(A._forward)
_before.vjp(partial(A._backward, wait_first=False))
VARIANTS = {"A_first_waits": A._attend, "B_no_wait": _before}
MEMORY_GROUP = "in_sample_round13_planner14b"  # benchmarks/planner_heldout_configs.json
LOSS = dict(packed=True, checkpoint=False, chunk=0, blockwise=True)

if __name__ == "__main__":
    model_ab_main(__doc__, "first_wait_ab", RESULT, MODELS, LOSS, A, "_attend", VARIANTS,
                  MEMORY_GROUP)
