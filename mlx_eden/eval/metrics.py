"""Classification metrics from (reference, prediction) pairs: per-class precision, recall and
F1, macro F1, accuracy, and a confusion matrix. Plain Python: the sets are small."""

from __future__ import annotations


def normalise(text: str) -> str:
    """Compare labels as a user reads them: trimmed, case-folded, without a final period."""
    return text.strip().rstrip(".").strip().casefold()


def classification_report(pairs: list[tuple[str, str]], labels: list[str]) -> dict:
    """Per-class P/R/F1 over `labels`; predictions outside them count as wrong ("invalid")."""
    names = {normalise(lbl): lbl for lbl in labels}
    confusion = {lbl: {p: 0 for p in [*labels, "<invalid>"]} for lbl in labels}
    invalid = 0
    for ref, pred in pairs:
        truth = names.get(normalise(ref))
        if truth is None:
            continue  # a reference outside the label set is a data problem, reported below
        guess = names.get(normalise(pred), "<invalid>")
        invalid += guess == "<invalid>"
        confusion[truth][guess] += 1
    per_class = {}
    for lbl in labels:
        tp = confusion[lbl][lbl]
        predicted = sum(confusion[t][lbl] for t in labels)
        support = sum(confusion[lbl].values())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[lbl] = {"precision": p, "recall": r, "f1": f1, "support": support}
    scored = sum(c["support"] for c in per_class.values())
    correct = sum(confusion[lbl][lbl] for lbl in labels)
    return {
        "accuracy": correct / scored if scored else 0.0,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels) if labels else 0.0,
        "per_class": per_class,
        "confusion": confusion,
        "invalid_predictions": invalid,
        "unlabelled_references": len(pairs) - scored,
        "n": len(pairs),
    }


def exact_match(pairs: list[tuple[str, str]]) -> dict:
    hits = sum(normalise(r) == normalise(p) for r, p in pairs)
    return {"exact_match": hits / len(pairs) if pairs else 0.0, "n": len(pairs)}


def balanced_report(confusion: dict, labels: list[str]) -> dict:
    """The class-balanced view of a confusion matrix: every true class is reweighted to the same
    total, so a 90/10 set counts its rare class as much as its common one. Recall (and so
    accuracy = mean recall) is unchanged per class; precision is what the reweighting moves."""
    weight = {t: 1.0 / max(sum(confusion[t].values()), 1) for t in labels}
    per_class = {}
    for lbl in labels:
        tp = confusion[lbl][lbl] * weight[lbl]
        predicted = sum(confusion[t][lbl] * weight[t] for t in labels)
        support = sum(confusion[lbl].values())
        p = tp / predicted if predicted else 0.0
        r = tp if support else 0.0  # weighted support is 1
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[lbl] = {"precision": p, "recall": r, "f1": f1, "support": support}
    present = [lbl for lbl in labels if per_class[lbl]["support"]]
    return {"accuracy": sum(per_class[lbl]["recall"] for lbl in present) / max(len(present), 1),
            "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels) if labels else 0.0,
            "per_class": per_class}
