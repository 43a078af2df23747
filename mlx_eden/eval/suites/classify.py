"""classify: greedy answers scored as labels: per-class P/R/F1, macro F1, accuracy, confusion;
`balanced: true` adds the view in which every class weighs the same. The token count of every
label is reported: a label that tokenizes into more pieces is harder to produce exactly."""

from __future__ import annotations

from ...errors import UserError
from ..metrics import balanced_report, classification_report


def run(ctx, suite) -> dict:
    labels = list(suite.labels or ctx.recipe.eval.labels)
    if not labels:
        raise UserError(f"suite {suite.name!r} has no labels",
                        key=f"eval.suites.{suite.name}.labels",
                        hint="give labels in the suite or eval.labels")
    records = ctx.training_records(suite)
    prompts, refs = zip(*(ctx.prompt(r) for r in records), strict=True)
    answers = ctx.generate(list(prompts), suite.max_new_tokens, suite.batch_size)
    preds = [ctx.decode(a) for a in answers]
    pairs = list(zip(refs, preds, strict=True))
    natural = classification_report(pairs, labels)
    metrics = {"accuracy": natural["accuracy"], "macro_f1": natural["macro_f1"],
               "invalid_rate": natural["invalid_predictions"] / max(natural["n"], 1),
               "n": natural["n"]}
    out = {"natural": natural}
    if suite.balanced:
        bal = balanced_report(natural["confusion"], labels)
        metrics.update(balanced_accuracy=bal["accuracy"], balanced_macro_f1=bal["macro_f1"])
        out["balanced"] = bal
    out["label_tokens"] = {lbl: len(ctx.tok(lbl, add_special_tokens=False)["input_ids"])
                           for lbl in labels}
    out["samples"] = [{"where": r.where, "reference": ref, "prediction": p}
                      for r, (ref, p) in zip(records[:20], pairs[:20], strict=False)]
    return {"metrics": metrics, **out}
