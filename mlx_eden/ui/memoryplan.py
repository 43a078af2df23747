"""Memory plans, fits and predicted-vs-measured comparisons as Rich tables and one-line
verdicts. The rendering half of memory/: memory/ computes and measures, this module shows
(`eden-mlx plan`, `eden-mlx profile`). Sizes in GiB (mlx_eden/units.py)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..memory.fit import FitResult, command, without_keys
from ..memory.measure import Measurement
from ..memory.planner import Plan
from ..memory.verify import VerifyPlan, verify_plan
from ..registry import UPDATE_GROUP_BYTES
from ..units import gib


def _describe(plan: Plan) -> dict[str, str]:
    s, shape = plan.settings, plan.shape
    quant = f"{s.quant_bits}-bit, group {s.quant_group}, scales+biases {s.dtype}" \
        if s.quant_bits else s.dtype
    ckpt = "checkpointed: layer inputs + 1 layer" if s.checkpoint else "all layers kept"
    chunk = f"{s.loss_chunk}-token chunks" if s.loss_chunk else \
        f"B x L x V = {s.batch} x {s.seq} x {shape.vocab} float32"
    return {"base weights": f"{shape.params_total / 1e9:.2f}B params, {quant}, "
                            f"embeddings{'' if shape.tied else ' and lm_head'} included",
            "adapters": f"{plan.estimate.trainable_params:,} float32 (r={s.rank}, "
                        f"{len(s.targets)} projections x {s.adapted_layers} layers)",
            "optimizer state": s.optimizer,
            "gradients": "float32" + (", accumulated + current" if s.grad_accumulation > 1
                                      else ""),
            "saved activations": ckpt,
            "logits and loss": chunk,
            "layer transient": "one layer's backward buffers",
            "update transient": f"one {UPDATE_GROUP_BYTES >> 20} MiB group of the streamed update",
            "communication buffer": "reduced gradient copy + 3 x 32 MiB all-reduce groups",
            "load transient": "LoftQ at load: one float layer and its SVD",
            "load cast": "loading: a stored tensor beside its cast",
            "headroom": "one op's output past the limit"}


def verdict(plan: Plan) -> str:
    word = "fits" if plan.fits else "does NOT fit"
    return (f"{word}: predicted peak {gib(plan.predicted_peak_bytes)} vs budget "
            f"{gib(plan.budget_bytes)} on {plan.device.name} ({plan.device.source})")


def render_plan(plan: Plan, console: Console | None = None) -> None:
    console = console or Console()
    e = plan.estimate
    console.print(f"[bold]{plan.model}[/bold]  ({plan.source})")
    console.print(f"{e.params_total:,} parameters, {e.trainable_params:,} trainable; peak in "
                  f"the {e.phase} phase")
    table = Table(show_header=True, header_style="bold")
    table.add_column("component")
    table.add_column("size", justify="right")
    table.add_column("at peak", justify="right")
    table.add_column("what")
    notes = _describe(plan)
    for name, at_peak in e.components.items():
        table.add_row(name, gib(e.sizes.get(name, at_peak)), gib(at_peak) if at_peak else "-",
                      notes.get(name, ""))
    table.add_row("[bold]total[/bold]", "", f"[bold]{gib(plan.predicted_peak_bytes)}[/bold]",
                  "")
    console.print(table)
    for name, value in e.notes.items():
        console.print(f"  {name}: {gib(value)}")
    style = "green" if plan.fits else "red"
    console.print(f"[{style}]{verdict(plan)}[/{style}]")
    hint = plan.device.raise_hint(plan.predicted_peak_bytes)
    if not plan.fits and hint:
        console.print(f"  {hint}")
    console.print(verify_line(verify_plan(plan)))


def verify_line(v: VerifyPlan) -> str:
    """The deployment check after training, one phase at a time (memory/verify.py)."""
    phases = ", then ".join(f"{name} {gib(n)}" for name, n in v.phases.items())
    word = "fits" if v.fits else "does NOT fit"
    return (f"verify (export gguf --quant q4_k_m --verify, against the model as trained): "
            f"{phases}: {word} (peak {gib(v.peak)} vs budget {gib(v.budget)})")


def render_fit(fit: FitResult, recipe_file: str, console: Console | None = None,
               flags: tuple = (), train_fits: bool = True) -> None:
    """The changes --fit found, and the command that runs them. `flags`: the user's own
    (see user_flags); `train_fits`: `train --fit` applies the plan (False on the torch
    backend, where the plan does not apply and only the --set form changes the run)."""
    console = console or Console()
    if not fit.changes:
        console.print("[red]no recipe change found that fits[/red]")
        return
    console.print("[bold]--fit:[/bold] recipe changes" + (" that make it fit:" if fit.fits
                                                          else " (still does not fit):"))
    for c in fit.changes:
        console.print(f"  {c.key}: {c.old} -> {c.new}    ({c.why})")
    style = "green" if fit.fits else "red"
    console.print(f"[{style}]{verdict(fit.plan)}[/{style}]")
    sets = fit.set_flags()
    if not fit.fits:
        return
    run_sets = command("train", recipe_file, without_keys(flags, fit), *sets)
    if train_fits:
        console.print(f"  run it: {command('train', recipe_file, flags, '--fit')}", soft_wrap=True)
        console.print(f"      or: {run_sets}", soft_wrap=True)
    else:
        console.print(f"  run it: {run_sets}", soft_wrap=True)


def render_comparison(plan: Plan, measured: Measurement, rows: list[dict],
                      console: Console | None = None) -> None:
    """The rows of memory.compare.compare() as a table, then the step time and the verdict."""
    console = console or Console()
    table = Table(show_header=True, header_style="bold")
    for col in ("part", "predicted", "measured", "error"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for r in rows:
        err = "-" if r["error"] is None else f"{r['error'] * 100:+.1f}%"
        table.add_row(r["part"], gib(r["predicted"]), gib(r["measured"]), err)
    console.print(table)
    console.print(f"{measured.step_seconds:.2f} s per step; plan: {verdict(plan)}")


def render_data_peak(plan: Plan, shapes, why: str, console: Console | None = None) -> None:
    """The peak for the batches the recipe's data actually produces, beside the worst case
    (every row max_seq_length long), or one line saying why it was not computed."""
    from ..memory.planner import data_peak

    console = console or Console()
    s = plan.settings
    if shapes is None:
        console.print(f"  with your data: not computed ({why})")
        return
    d = data_peak(plan, shapes.shapes)
    word = "fits" if d.fits else "does NOT fit"
    rows = "packed rows" if s.packed else "rows"
    console.print(f"  with your data ({shapes.samples} samples, longest "
                  f"{shapes.longest_sample} tokens): largest batch {d.rows} {rows} x {d.width} "
                  f"-> predicted peak {gib(d.peak)} ({word}); worst case {s.batch} x {s.seq} "
                  f"(max_seq_length) -> {gib(plan.predicted_peak_bytes)}")
