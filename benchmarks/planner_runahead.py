"""Strict against free-running peaks: how much MLX's run-ahead adds to what a step needs.

The planner prices what a step needs (`Estimate.needed`): the peak when MLX waits for work in
flight before each op (strict mode, what `planner_heldout.py` measures). A run without a
memory limit lets MLX's scheduler run ahead, so more buffers are alive at once; the trainer sets
the budget as MLX's limit, which bounds that. This measures both peaks, each in a fresh process,
on named configurations of `planner_heldout_configs.json` (with each attention path) and on the
tiny whole-run shape (`whole_run.py`: the tiny model, 4 x 512 packed, float32).

    .venv/bin/python benchmarks/planner_runahead.py            # ~2 min on 2 cores
    .venv/bin/python benchmarks/planner_runahead.py --names in-sample-00,in-sample-05
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULT = ROOT / "benchmarks" / "results" / "planner_runahead.json"
NAMES = ["in-sample-00", "in-sample-01", "in-sample-03", "in-sample-05", "in-sample-07"]
WHOLE_RUN = ["data.max_seq_length=512", "train.batch_size=4", "data.packing=true",
             "model.dtype=float32", "train.backend=mlx"]

CHILD = """
import json, sys
import mlx_eden.backends.mlx
from mlx_eden.memory.measure import run_profile
from mlx_eden.recipe import load_recipe
recipe = None if sys.argv[3] == "-" else sys.argv[3]
m = run_profile(load_recipe(recipe, sys.argv[4:]), sys.argv[1], 2, strict=sys.argv[2] == "1",
                evaluate=False)
print(json.dumps(m.peak))
"""


def peak(folder: Path, strict: bool, recipe: str, sets: list[str]) -> int:
    """One fresh process's measured peak."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), "1" if strict else "0",
                           recipe, f"model.path={folder}", *sets],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cases(names: list[str]):
    """(name, model folder, recipe or "-", settings, planned needed bytes) to measure."""
    import planner_heldout as ph

    from mlx_eden.memory.planner import Settings, estimate
    from mlx_eden.memory.shapes import load_config, shape_from_config
    from mlx_eden.recipe import load_recipe
    from mlx_eden.tiny import TinySpec, write_tiny

    def needed(folder, recipe, sets):
        shape = shape_from_config(load_config(str(folder))[0])
        r = load_recipe(None if recipe == "-" else recipe, [f"model.path={folder}", *sets])
        return estimate(shape, Settings.from_recipe(r, shape)).needed

    data = json.loads(ph.CONFIGS.read_text())
    configs = {c["name"]: c for g in ph.GROUPS for c in data.get(g, [])}
    tiny = ph.WORK / "models" / "tiny-default"
    if not (tiny / "config.json").exists():
        write_tiny(tiny, TinySpec())
    recipe = str(ROOT / "recipes" / "tiny-demo.yaml")
    for attention in ("blockwise", "fused"):
        sets = [*WHOLE_RUN, f"train.attention={attention}"]
        yield f"whole-run-tiny-{attention}", tiny, recipe, sets, needed(tiny, recipe, sets)
        for name in names:
            c = json.loads(json.dumps(configs[name]))
            c["values"]["train.attention"] = attention
            folder, sets = ph.model_dir(c), ph.sets(c)
            yield f"{name}-{attention}", folder, "-", sets, needed(folder, "-", sets)


def main() -> None:
    names = sys.argv[sys.argv.index("--names") + 1].split(",") if "--names" in sys.argv \
        else NAMES
    rows = []
    for name, folder, recipe, sets, planned in cases(names):
        strict, free = peak(folder, True, recipe, sets), peak(folder, False, recipe, sets)
        rows.append({"name": name, "settings": sets, "planned_needed_bytes": planned,
                     "strict_peak_bytes": strict, "free_peak_bytes": free,
                     "free_over_strict": round(free / strict, 3)})
        print(f"{name:28s} planned {planned / 2**20:7.1f} MiB  strict {strict / 2**20:7.1f}  "
              f"free-running {free / 2**20:7.1f}  x{free / strict:.2f}", flush=True)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": "planner_runahead", "steps": 2, "rows": rows},
                              indent=2) + "\n")
    tmp.replace(RESULT)
    print(f"-> {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
