"""Run a recipe's evaluation suites on a model (+ adapter), against a baseline, and judge the
gates. Results: <out>/eval/<suite>.json per suite and <out>/eval/summary.json.

One model load serves both sides of `--baseline base`: a freshly added LoRA/DoRA adapter leaves
the model's outputs unchanged (B starts at zero; DoRA's magnitude starts at the weight norm), so
the base is scored first, then the adapter is loaded over it and the suites run again."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..backends.base import choose_backend, load_backend
from ..errors import UserError
from ..hub import resolve_model
from ..run.rundir import write_json_atomic
from ..tokens import recipe_tokenizer
from . import baseline as B
from .context import EvalContext
from .gates import judge
from .suites import RUNNERS


def select(recipe, only: tuple[str, ...] = ()) -> list:
    suites = list(recipe.eval.suites)
    if not suites:
        raise UserError("the recipe declares no evaluation suites", key="eval.suites",
                        hint="add eval.suites (see `eden-mlx recipe keys`), or use --split")
    unknown = [n for n in only if n not in {s.name for s in suites}]
    if unknown:
        raise UserError(f"no suite named {unknown[0]!r}", key="eval.suites",
                        hint=f"declared: {', '.join(s.name for s in suites)}")
    return [s for s in suites if not only or s.name in only]


def untrained(recipe):
    """The recipe with a zero starting adapter: evaluation loads its own adapter, so init_from
    would start the "base" from another round's adapter, and adapter.init: loftq would both put
    LoftQ's (non-zero) starting adapter into the "base" scores and recompute its SVDs before the
    stored base replaces them (minutes per 32B layer set, for nothing)."""
    return dataclasses.replace(recipe, adapter=dataclasses.replace(
        recipe.adapter, init_from=None, init="default"))


def run_suite(ctx: EvalContext, suite) -> dict:
    started = time.perf_counter()
    result = RUNNERS[suite.kind](ctx, suite)
    result.update(suite=suite.name, kind=suite.kind, seconds=time.perf_counter() - started)
    return result


def _base_metrics(ctx: EvalContext, suites: list, backend: str) -> dict[str, dict]:
    out = {}
    for s in suites:
        key = B.cache_key(ctx.recipe, ctx.model_dir, s, backend)
        hit = B.cached(key)
        if hit is None:
            hit = run_suite(ctx, s)["metrics"]
            B.store(key, hit)
        out[s.name] = hit
    return out


def evaluate(recipe, *, adapter: Path | None, out_dir: Path, only: tuple[str, ...] = (),
             baseline: str | None = None, backend: str | None = None,
             progress=lambda msg: None) -> dict:
    """Score the selected suites; return the summary (also written to out_dir/eval/)."""
    suites = select(recipe, only)
    name, _ = choose_backend(backend or recipe.train.backend, recipe)
    model_dir = resolve_model(recipe.model.path, recipe.model.revision)
    tok = recipe_tokenizer(recipe, model_dir)
    impl = load_backend(name)
    impl.setup(untrained(recipe), model_dir)
    ctx = EvalContext(recipe, impl, tok, Path(model_dir))
    base = None
    if baseline == "base":
        progress("scoring the base model (cached)")
        base = _base_metrics(ctx, suites, name)
    elif baseline:
        base = B.read_baseline(baseline)
    if adapter is not None:
        impl.load_adapter(Path(adapter))
    results = {}
    folder = Path(out_dir) / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    for s in suites:
        progress(f"suite {s.name} ({s.kind})")
        results[s.name] = run_suite(ctx, s)
        write_json_atomic(folder / f"{s.name}.json", results[s.name])
    metrics = {n: r["metrics"] for n, r in results.items()}
    gates = judge(recipe.eval.gates, metrics, base)
    summary = {"suites": metrics, "baseline": base, "gates": gates,
               "passed": all(g["passed"] for g in gates), "model": str(recipe.model.path),
               "adapter": str(adapter) if adapter else None, "backend": name,
               "baseline_source": baseline}
    write_json_atomic(folder / "summary.json", summary)
    return summary
