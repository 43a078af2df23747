import json
from collections import Counter

import pytest

from mlx_eden.data.splits import label_of, read_splits
from mlx_eden.errors import UserError
from mlx_eden.eval.metrics import classification_report
from mlx_eden.recipe import load_recipe

from .conftest import ROOT, SAMPLES, run_cli

CLASSIFIER = ROOT / "recipes" / "qwen2.5-7b-classifier.yaml"


def test_classification_report_by_hand():
    pairs = [("positive", "positive"), ("positive", "Negative."), ("negative", "negative"),
             ("neutral", "positive"), ("neutral", "maybe"), ("neutral", " neutral ")]
    r = classification_report(pairs, ["positive", "negative", "neutral"])
    # positive: tp 1, predicted 2 (one true neutral), support 2 -> p 1/2, r 1/2
    assert r["per_class"]["positive"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # negative: tp 1, predicted 2 ("Negative." normalises), support 1 -> p 1/2, r 1, f1 2/3
    assert r["per_class"]["negative"]["precision"] == 0.5
    assert r["per_class"]["negative"]["f1"] == pytest.approx(2 / 3)
    # neutral: tp 1, predicted 1, support 3 -> p 1, r 1/3, f1 1/2
    assert r["per_class"]["neutral"]["recall"] == pytest.approx(1 / 3)
    assert r["accuracy"] == pytest.approx(3 / 6) and r["invalid_predictions"] == 1
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert r["confusion"]["neutral"]["<invalid>"] == 1


def test_balance_oversamples_to_the_largest_class(tmp_path):
    f = tmp_path / "skewed.jsonl"
    rows = [("good", "positive")] * 12 + [("bad", "negative")] * 3 + [("meh", "neutral")] * 1
    f.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": t}, {"role": "assistant", "content": lbl}]}) + "\n"
        for t, lbl in rows))
    spec = load_recipe(None, [f"data.train={f}", "data.balance=true"]).data
    counts = Counter(label_of(r) for r in read_splits(spec, 0)["train"])
    assert counts == {"positive": 12, "negative": 12, "neutral": 12}
    spec = load_recipe(None, [f"data.train={SAMPLES / 'chat' / 'train.jsonl'}",
                              "data.balance=true"]).data
    with pytest.raises(UserError, match="does not look like labelled data"):
        read_splits(spec, 0)


def test_classifier_train_then_eval_is_deterministic(tmp_path, tiny_qwen2):
    run = tmp_path / "cls"
    sets = {"model.path": tiny_qwen2, "model.quantize.bits": "null", "model.dtype": "float32",
            "train.backend": "mlx", "data.train": SAMPLES / "classifier" / "train.jsonl",
            "data.valid": SAMPLES / "classifier" / "valid.jsonl",
            "data.test": SAMPLES / "classifier" / "test.jsonl", "data.max_seq_length": 128,
            "data.balance": "true", "train.batch_size": 8, "train.grad_accumulation": 1,
            "train.max_steps": 12, "train.learning_rate": 3e-3, "train.eval_every": 6,
            "train.eval_batches": 2}
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    proc = run_cli("train", CLASSIFIER, *args, "--output", run, "--no-dashboard")
    assert proc.returncode == 0, proc.stderr
    first = run_cli("eval", run, "--split", "test", "--limit", "9", check=True)
    report = json.loads((run / "eval-test.json").read_text())
    assert "macro F1" in first.stdout and report["n"] == 9
    assert set(report["per_class"]) == {"positive", "negative", "neutral"}
    assert sum(c["support"] for c in report["per_class"].values()) == 9
    run_cli("eval", run, "--split", "test", "--limit", "9", check=True)
    again = json.loads((run / "eval-test.json").read_text())
    assert [s["prediction"] for s in again["samples"]] == \
        [s["prediction"] for s in report["samples"]]  # greedy decoding is deterministic
