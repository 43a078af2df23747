"""How many steps does a run need to reach its race's top level? (planner31b, groundwork)

planner_heldout.py measures each configuration in fresh processes of STEPS = 2 optimizer steps
(step 1 creates the optimizer state) and scores the highest. planner28a/28c traced a race in
MLX's CPU scheduler (strict mode waits on one dispatch in ten): a block's peak sits at one of a
few levels one float32 T x I apart (T = batch x length, I = intermediate size), set by where its
ops fall in the process's dispatch count, which every step moves. This script measures, for
stored in-sample configurations (never a held-out one), each step's peak in `--processes` fresh
processes of `--steps` steps each, the way planner_heldout.measure does (its recipe building,
strict mode, synthetic batches, `run_profile(..., evaluate=False)`). A process of S steps runs
the same ops as the first S steps of a longer one, so one process of 8 steps gives the score of
N = 1..8 measured steps: the highest step peak among its first N steps.

Each step's peak (the highest of its forward, backward and update phases, MLX's peak reset at
each phase's end by the profiler) is stored in bytes and as a level: (peak - the planner's
needed peak) / float32 T x I (T one micro-batch's tokens). A row's top level is the highest
over every step and process (step 1 counts: the score is the highest of every measured step, and
some rows peak at step 1, which also compiles); "at top by N" counts the processes whose N-step
score (their highest in steps 1..N) is within 0.1 T x I of it.

    .venv/bin/python benchmarks/planner_race_steps.py                 # the default rows, 3 x 8
    .venv/bin/python benchmarks/planner_race_steps.py --processes 3 --rows mech25a-22  # 3 more
    .venv/bin/python benchmarks/planner_race_steps.py --report        # table from the JSON

Writes benchmarks/results/planner_race_steps.json (each process's per-step, per-phase peaks,
its wall time, the row's plan; a second run appends its processes to a row's) and prints the
markdown tables for benchmarks/README.md and what N steps would cost a held-out round (`cost`).
Published (benchmarks/README.md, planner31b): the default rows, run twice (6 processes each).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import planner_heldout as ph  # noqa: E402  (recipe building, models, the planner's prediction)

RESULT = ROOT / "benchmarks" / "results" / "planner_race_steps.json"
NS = (2, 3, 4, 6, 8)  # the measured step counts the table compares
TOLERANCE = 0.1  # levels within 0.1 T x I count as the same level
# Racy stored in-sample rows (their draws sat at different levels one float32 T x I apart),
# then rows stored at one level in every draw (they should not move with N).
# planner28c's twins of mech25a-22 and mech25a-12 (lowest_gate_up_buffers' race), planner27a's
# of heldout25-02 (the all-seven backward), sweep28-03 (the compiled lowest up_proj forward).
RACY = ("mech25a-22-gate-up-down", "mech28c-01", "mech28c-02", "mech28c-05", "mech28c-08",
        "mech27a-01", "mech27a-04", "mech27a-08", "sweep28-03",
        "mech25a-12", "mech28c-03", "mech28c-04", "mech28c-09", "mech28c-11", "mech27a-02",
        "mech27a-05", "mech27a-06", "mech27a-07", "mech27a-09")
STEADY = ("mech28c-10", "mech27a-03", "sweep28-10",
          "mech28c-06", "mech28c-07", "mech27a-10", "mech27a-11")


def find(names: list[str]) -> list[dict]:
    """The stored in-sample configurations whose names start with `names` (held-out groups are
    never searched)."""
    data = json.loads(ph.CONFIGS.read_text())
    rows = []
    for name in names:
        hits = [dict(c, group=g) for g, v in data.items() if g.startswith("in_sample")
                and isinstance(v, list) for c in v if c["name"].startswith(name)]
        if len(hits) != 1:
            raise SystemExit(f"{name}: {len(hits)} in-sample configurations match")
        rows.append(hits[0])
    return rows


def child(c: dict, steps: int) -> dict:
    """In a fresh process: every phase's peak of `steps` steps of `c`."""
    import mlx_eden.backends.mlx  # noqa: F401  (fast BLAS before mlx.core)
    from mlx_eden.memory.measure import run_profile
    from mlx_eden.recipe import load_recipe

    folder = ph.model_dir(c)
    recipe = load_recipe(None, [f"model.path={folder}"] + ph.sets(c))
    m = run_profile(recipe, folder, steps, strict=True, evaluate=False)
    return {"samples": [[s.step, s.phase, s.peak] for s in m.samples if s.phase != "weights"],
            "step_seconds": m.step_seconds}


def txi(c: dict) -> int:
    """One float32 T x I in bytes (T = one micro-batch's tokens)."""
    v = c["values"]
    return 4 * v["train.batch_size"] * v["data.max_seq_length"] * c["model"]["intermediate"]


def measure(c: dict, processes: int, steps: int) -> list[dict]:
    draws = []
    for _ in range(processes):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(c), str(steps)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise RuntimeError(f"{c['name']} failed:\n{proc.stderr[-2000:]}")
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        peaks = {}
        for step, _, peak in d["samples"]:
            peaks[step] = max(peaks.get(step, 0), peak)
        d["step_peaks"] = [peaks[s] for s in range(1, steps + 1)]
        d["wall_seconds"] = round(time.perf_counter() - t0, 2)
        draws.append(d)
        print(f"  {c['name'][:40]}: {d['step_peaks']} ({d['wall_seconds']} s)", flush=True)
    return draws


def summarize(r: dict) -> dict:
    """Levels per step (T x I over the plan, and over the row's lowest), the top
    level, and per N how many processes' N-step score is at the top level."""
    unit, plan = r["txi_bytes"], r["predicted_peak_bytes"]
    levels = [[round((p - plan) / unit, 2) for p in d["step_peaks"]] for d in r["draws"]]
    every = [x for lv in levels for x in lv]
    low, top = min(every), max(every)
    at_top = {n: sum(max(lv[:n]) >= top - TOLERANCE for lv in levels)
              for n in NS if n <= len(levels[0])}
    scores = {n: round(max(max(lv[:n]) for lv in levels), 2)
              for n in NS if n <= len(levels[0])}
    errors = {n: round((plan - max(max(d["step_peaks"][:n]) for d in r["draws"]))
                       / max(max(d["step_peaks"][:n]) for d in r["draws"]), 4)
              for n in NS if n <= len(levels[0])}
    return {"levels_over_plan": levels, "lowest": low, "top": top, "error_by_n": errors,
            "processes_at_top_by_n": at_top, "score_over_plan_by_n": scores,
            "first_step_at_top": [next((i + 1 for i, x in enumerate(lv)
                                        if x >= top - TOLERANCE), None) for lv in levels]}


def levels_seen(values: list[float]) -> list[float]:
    """The distinct levels of `values` (within TOLERANCE of each other: one level)."""
    out: list[float] = []
    for x in sorted(values):
        if not out or x - out[-1] > TOLERANCE:
            out.append(x)
    return out


def table(result: dict) -> str:
    """Per row: the levels seen (T x I over the lowest), the top over the plan, per step how
    many processes are at the top, the step each process first reaches it, and per N how many
    processes' N-step score is at the top; then the planner's error per N against the highest
    N-step score of all the row's processes (the held-out score, with K processes)."""
    ns = [n for n in NS if n <= result["steps"]]
    out = ["| configuration | T x I (MiB) | levels over the lowest | top over plan | "
           f"processes at top, steps 1-{result['steps']} | first step at top | "
           f"at top by N = {', '.join(map(str, ns))} |",
           "|---|---:|---|---:|---|---|---|"]
    for r in result["rows"]:
        s = r["summary"]
        k, lv = len(r["draws"]), s["levels_over_plan"]
        seen = levels_seen([x - s["lowest"] for p in lv for x in p])
        per_step = [sum(p[i] >= s["top"] - TOLERANCE for p in lv) for i in range(len(lv[0]))]
        first = " ".join(str(f) if f else "-" for f in sorted(
            s["first_step_at_top"], key=lambda f: f or 99))
        out.append(f"| {r['name'][:28]} | {r['txi_bytes'] / 2**20:.2f} | "
                   f"{', '.join(f'{x:.2f}' for x in seen)} | {s['top']:+.2f} | "
                   f"{' '.join(map(str, per_step))} (of {k}) | {first} | "
                   + " ".join(str(s["processes_at_top_by_n"][n]) for n in ns) + f" (of {k}) |")
    out += ["", "| configuration | plan (MiB) | " + " | ".join(f"N={n}" for n in ns) + " |",
            "|---|---:|" + "---:|" * len(ns)]
    for r in result["rows"]:  # the planner's error against the highest of every process
        e = r["summary"]["error_by_n"]
        out.append(f"| {r['name'][:28]} | {r['predicted_peak_bytes'] / 2**20:.2f} | "
                   + " | ".join(f"{e[n] * 100:+.1f}%" for n in ns) + " |")
    return "\n".join(out)


def cost(group: str = "heldout_round29", minutes_at_2: float = 14.0, jobs: int = 2,
         processes: int = 3) -> str:
    """What N measured steps would cost a round: `group`'s stored rows' step seconds (the
    median process's mean step, compile included) times the extra steps, `processes` per row,
    over `jobs` (round 29 took 14 minutes at N = 2, --jobs 2)."""
    rows = json.loads(ph.RESULT.read_text())[group]["configs"]
    per_step = processes * sum(r["step_seconds"] for r in rows) / jobs / 60
    return (f"{group}: {per_step:.1f} minutes a step; " + ", ".join(
        f"N={n} about {minutes_at_2 + (n - 2) * per_step:.0f} min" for n in NS))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]), int(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rows", metavar="NAME,NAME", help="stored in-sample name prefixes")
    ap.add_argument("--report", action="store_true", help="print the table, measure nothing")
    args = ap.parse_args()
    if args.report:
        result = json.loads(RESULT.read_text())
        for r in result["rows"]:  # summaries again from the stored draws
            r["summary"] = summarize(r)
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
        print(table(result))
        print(cost())
        return
    names = args.rows.split(",") if args.rows else [*RACY, *STEADY]
    old = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    if old and old["steps"] != args.steps:
        raise SystemExit(f"{RESULT.name} holds {old['steps']}-step draws: move it first")
    result = {"benchmark": "planner_race_steps", "steps": args.steps,
              "mode": "strict (mx memory limit 1)", "seconds": old.get("seconds", 0),
              "rows": []}
    kept = {r["name"]: r for r in old.get("rows", [])}
    started = time.perf_counter()
    for c in find(names):
        pred = ph.predict(c)
        draws = measure(c, args.processes, args.steps)
        if c["name"] in kept and old.get("steps") == args.steps:  # more processes: append
            draws = kept[c["name"]]["draws"] + draws
        r = {"name": c["name"], "group": c["group"], "racy": c["name"].startswith(RACY),
             "predicted_peak_bytes": pred["peak"], "predicted_phase": pred["phase"],
             "txi_bytes": txi(c), "draws": draws}
        r["summary"] = summarize(r)
        kept[r["name"]] = r
        result["rows"] = list(kept.values())
        result["seconds"] = round(old.get("seconds", 0) + time.perf_counter() - started, 1)
        RESULT.write_text(json.dumps(result, indent=1) + "\n")  # after each row: stoppable
    for r in result["rows"]:  # rows kept from the JSON hold string keys: summarize again
        r["summary"] = summarize(r)
    print(table(result))


if __name__ == "__main__":
    main()
