from __future__ import annotations

import click


@click.command("eval")
@click.argument("run_dir", type=click.Path())
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test",
              show_default=True)
@click.option("--adapter", default="best", show_default=True,
              help="best, adapter (the last), or an adapter folder.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N records only.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Default: eval.max_new_tokens.")
def eval_(run_dir, split, adapter, limit, max_new_tokens):
    """Greedy generation on a split of RUN_DIR's data: per-class precision/recall/F1 when the
    recipe lists eval.labels, exact match otherwise. Writes RUN_DIR/eval-<split>.json."""
    from rich.console import Console
    from rich.table import Table

    from ..eval.run import evaluate_run

    report = evaluate_run(run_dir, split, adapter, limit, max_new_tokens)
    console = Console()
    if "per_class" in report:
        table = Table(title=f"{run_dir} ({split}, {report['n']} records)")
        for col in ("label", "precision", "recall", "f1", "support"):
            table.add_column(col, justify="left" if col == "label" else "right")
        for label, c in report["per_class"].items():
            table.add_row(label, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                          str(c["support"]))
        console.print(table)
        console.print(f"accuracy {report['accuracy']:.3f}  macro F1 {report['macro_f1']:.3f}  "
                      f"invalid outputs {report['invalid_predictions']}")
    else:
        console.print(f"exact match {report['exact_match']:.3f} on {report['n']} records")
    console.print(f"wrote {run_dir}/eval-{split}.json")
