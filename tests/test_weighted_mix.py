"""Weighted data.train entries ({path, weight}): realized shares, seeding, validation, the
counts in run.json and the report, and exact resume of a weighted run after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter

import numpy as np
import pytest

from mlx_eden.data.splits import read_splits
from mlx_eden.errors import UserError, UserErrors
from mlx_eden.recipe import load_recipe, recipe_from_dict

from .conftest import EDEN, ROOT, run_cli
from .test_trainer import DEMO, _wait_for, events, sets

SAMPLES = ROOT / "data" / "samples" / "chat" / "train.jsonl"


def _chat(path, n: int, tag: str):
    rows = [{"messages": [{"role": "user", "content": f"{tag} question {i}"},
                          {"role": "assistant", "content": f"{tag} answer {i}"}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(tmp_path, body: str):
    f = tmp_path / "r.yaml"
    f.write_text("model: {path: unused}\n" + body)
    return f


@pytest.fixture
def two_sources(tmp_path):
    return _chat(tmp_path / "iac.jsonl", 900, "iac"), _chat(tmp_path / "old.jsonl", 100, "old")


def _mixed(tmp_path, sources, seed=0, weights=(0.92, 0.08)):
    a, b = sources
    r = load_recipe(_recipe(tmp_path, f"data:\n  train:\n    - {{path: {a}, weight: {weights[0]}}}"
                            f"\n    - {{path: {b}, weight: {weights[1]}}}\n"))
    mix: dict = {}
    return read_splits(r.data, seed, mix)["train"], mix


def test_epoch_draws_each_source_by_weight(tmp_path, two_sources):
    train, mix = _mixed(tmp_path, two_sources)
    a, b = map(str, two_sources)
    # An epoch is as many samples as the sources hold (1000); 92% / 8% of them.
    assert len(train) == 1000
    counts = Counter(r.file for r in train)
    assert counts == {a: 920, b: 80}
    assert mix == {a: {"weight": 0.92, "records": 900, "drawn": 920},
                   b: {"weight": 0.08, "records": 100, "drawn": 80}}
    # The small share is drawn without replacement; the big source is used up before repeating.
    assert len({r.line for r in train if r.file == b}) == 80
    per_line = Counter(r.line for r in train if r.file == a)
    assert len(per_line) == 900 and max(per_line.values()) == 2


def test_shares_hold_for_other_weights(tmp_path, two_sources):
    train, _ = _mixed(tmp_path, two_sources, weights=(1, 3))
    counts = Counter(r.file for r in train)
    assert counts[str(two_sources[1])] == 750  # 3/4 of 1000 from a 100-record source
    assert Counter(r.line for r in train if r.file == str(two_sources[1])).most_common(1)[0][1] \
        in (7, 8)  # 7.5 passes: every record 7 or 8 times, none more


def test_draw_is_seeded(tmp_path, two_sources):
    key = [(r.file, r.line) for r in _mixed(tmp_path, two_sources, seed=0)[0]]
    again = [(r.file, r.line) for r in _mixed(tmp_path, two_sources, seed=0)[0]]
    other = [(r.file, r.line) for r in _mixed(tmp_path, two_sources, seed=1)[0]]
    assert key == again
    assert key != other
    small = {k for k in key if k[0] == str(two_sources[1])}
    assert small != {k for k in other if k[0] == str(two_sources[1])}  # another replay slice


def test_plain_paths_and_mixed_entries_load(tmp_path, two_sources):
    a, b = two_sources
    r = load_recipe(_recipe(tmp_path, f"data:\n  train: [{a}, {{path: {b}, weight: 3}}]\n"))
    assert r.data.train[0] == str(a) and r.data.train[1].weight == 3.0
    assert recipe_from_dict(r.to_dict()) == r  # run.json round trip (resume reads it back)
    train = read_splits(r.data, 0)["train"]
    assert Counter(r.file for r in train)[str(b)] == 750  # a plain path weighs 1
    plain = load_recipe(_recipe(tmp_path, f"data:\n  train: [{a}, {b}]\n"))
    assert len(read_splits(plain.data, 0)["train"]) == 1000  # unweighted: read as before


@pytest.mark.parametrize("weight, message", [
    ("-0.5", "must be positive, got -0.5"), ("0", "must be positive, got 0.0"),
    (".nan", "must be a finite number, got nan"), ("lots", "must be a number")])
def test_bad_weight_names_file_line_and_key(tmp_path, two_sources, weight, message):
    a, b = two_sources
    f = _recipe(tmp_path, f"data:\n  train:\n    - {{path: {a}, weight: 1}}\n"
                f"    - {{path: {b}, weight: {weight}}}\n")
    with pytest.raises((UserError, UserErrors)) as err:
        load_recipe(f)
    assert f"{f}:5: data.train.1.weight: {message}" in str(err.value)
    proc = run_cli("recipe", "check", f)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data.train.1.weight" in proc.stderr


def test_duplicate_source_and_balance_are_refused(tmp_path, two_sources):
    a, _ = two_sources
    f = _recipe(tmp_path, f"data:\n  balance: true\n  train:\n    - {{path: {a}, weight: 1}}\n"
                f"    - {{path: {a}, weight: 2}}\n")
    with pytest.raises(UserErrors) as err:
        load_recipe(f)
    text = str(err.value)
    assert f"{f}:6: data.train.1: {a} is listed twice" in text
    assert "data.balance: cannot be combined with weighted data.train" in text


def test_recipe_keys_lists_the_weight():
    proc = run_cli("recipe", "keys", check=True)
    assert "data.train.N.weight" in proc.stdout


def _weighted_sets(tmp_path, model, **kw):
    lines = SAMPLES.read_text().splitlines(keepends=True)
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text("".join(lines[:400]))
    small.write_text("".join(lines[400:]))
    train = f"[{{path: {big}, weight: 0.3}}, {{path: {small}, weight: 0.7}}]"
    return sets(model, **{"data.train": train, **kw}), big, small


def test_weighted_run_resumes_exactly_and_reports_counts(tmp_path, tiny_qwen2):
    kw = {"train.max_steps": 8, "train.save_every": 4, "train.keep_checkpoints": 5}
    args, big, small = _weighted_sets(tmp_path, tiny_qwen2, **kw)
    full = tmp_path / "full"
    proc = run_cli("train", DEMO, *args, "--output", full, "--no-dashboard")
    assert proc.returncode == 0, proc.stderr
    mix = json.loads((full / "run.json").read_text())["data_mix"]
    assert mix == {str(big): {"weight": 0.3, "records": 400, "drawn": 144},
                   str(small): {"weight": 0.7, "records": 80, "drawn": 336}}

    killed = tmp_path / "killed"
    p = subprocess.Popen(EDEN + ["train", str(DEMO), *args, "--output", str(killed),
                                 "--no-dashboard"], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    assert _wait_for(lambda: (killed / "metrics.jsonl").exists() and '"what": "checkpoint"'
                     in (killed / "metrics.jsonl").read_text(), p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert max(e["step"] for e in events(killed, "train")) < 8
    proc = run_cli("train", DEMO, *args, "--output", killed, "--resume", "--no-dashboard")
    assert proc.returncode == 0, proc.stderr
    a, b = events(full, "train"), events(killed, "train")
    assert [e["step"] for e in b] == list(range(1, 9))
    np.testing.assert_allclose([e["loss"] for e in b], [e["loss"] for e in a], atol=1e-5, rtol=0)

    html = tmp_path / "report.html"
    proc = run_cli("report", full, "--output", html)
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert "data mix" in page and "336 drawn of 80" in page


def test_weights_apply_to_the_train_part_of_a_split(tmp_path, two_sources):
    a, b = two_sources
    r = load_recipe(_recipe(tmp_path, f"data:\n  split: [0.8, 0.1, 0.1]\n  train:\n"
                            f"    - {{path: {a}, weight: 1}}\n    - {{path: {b}, weight: 1}}\n"))
    parts = read_splits(r.data, 0)
    assert len(parts["valid"]) == len(parts["test"]) == 100  # split first, from both sources
    counts = Counter(x.file for x in parts["train"])
    assert sum(counts.values()) == 800 and counts[str(a)] == counts[str(b)] == 400
    held_out = {(x.file, x.line) for x in parts["valid"] + parts["test"]}
    assert not held_out & {(x.file, x.line) for x in parts["train"]}  # replay never leaks


def test_data_check_and_plan_take_the_weighted_stage2_recipe(tiny_spare):
    stage2 = ROOT / "recipes" / "qwen3-14b-stage2-iac.yaml"  # its tokens.add needs spare rows
    proc = run_cli("data", "check", SAMPLES, "--recipe", stage2, "--set",
                   f"model.path={tiny_spare}")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("plan", stage2)
    assert proc.returncode == 0, proc.stderr
