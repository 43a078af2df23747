"""`data prepare` mixing, splits (stratified, grouped, decontaminated), determinism, output
safety and recipe errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mlx_eden.data.prepare.dedup import NearDedup
from mlx_eden.data.prepare.mixing import mix
from mlx_eden.data.prepare.spec import load_prepare
from mlx_eden.data.splits import read_splits
from mlx_eden.errors import UserError, UserErrors
from mlx_eden.recipe import DataSpec

from .conftest import run_cli
from .prepare_helpers import chat, ko_answer, prepare, read_out, write_jsonl, write_recipe


def _source(tmp_path, name, n, start=0, **extra):
    recs = [chat(f"{name} {i}", ko_answer(start + i), **extra) for i in range(n)]
    return {"name": name, "path": str(write_jsonl(tmp_path / f"{name}.jsonl", recs))}


def test_mix_shares_realized_and_short_sources_warned():
    res = mix({"a": 100, "b": 30, "c": 10}, {"a": 0.7, "b": 0.2, "c": 0.1}, None, "shortfall", 0)
    assert {k: len(v) for k, v in res.picks.items()} == {"a": 70, "b": 20, "c": 10}
    assert not res.warnings
    res = mix({"a": 100, "b": 30, "c": 10}, {"a": 0.7, "b": 0.2, "c": 0.1}, 200, "shortfall", 0)
    assert {k: len(v) for k, v in res.picks.items()} == {"a": 100, "b": 30, "c": 10}
    assert len(res.warnings) == 3 and "shortfall of 40" in res.warnings[0]
    res = mix({"a": 100, "b": 30, "c": 10}, {"a": 0.7, "b": 0.2, "c": 0.1}, 200, "repeat", 0)
    assert {k: len(v) for k, v in res.picks.items()} == {"a": 140, "b": 40, "c": 20}
    assert Counter(res.picks["c"]) == {i: 2 for i in range(10)}  # every record twice
    assert "repeated" in res.warnings[2]


def test_mixing_sources_and_replay_end_to_end(tmp_path):
    replay = write_jsonl(tmp_path / "round1.jsonl",
                         [chat(f"old {i}", ko_answer(500 + i)) for i in range(40)])
    tree = {"sources": [{**_source(tmp_path, "own", 80), "share": 0.75},
                        {**_source(tmp_path, "general", 40, start=100), "share": 0.25}],
            "mix": {"replay": [str(replay)], "replay_share": 0.2, "total": 100},
            "split": {"fractions": [1.0, 0.0], "decontaminate": None}}
    res, out = prepare(tmp_path, tree)
    by_source = Counter(r["messages"][0]["content"].split()[0]
                        for r in read_out(out, "train.jsonl"))
    assert by_source == {"own": 60, "general": 20, "old": 20}
    assert res.metadata["mix"]["targets"] == {"own": 60, "general": 20, "replay": 20}
    assert not res.warnings
    not_sampled = [r for r in read_out(out, "rejected.jsonl") if r["filter"] == "mix"]
    assert len(not_sampled) == 20 + 20 + 20


def _labelled(tmp_path, n_a=90, n_b=10):
    recs = [chat(f"review {i}", "A" if i < n_a else "B", topic=f"t{i % 3}")
            for i in range(n_a + n_b)]
    return {"name": "cls", "path": str(write_jsonl(tmp_path / "cls.jsonl", recs))}


def test_stratified_split_keeps_the_ratio_and_oversamples_train(tmp_path):
    tree = {"sources": [_labelled(tmp_path)], "filters": {"exact_dedup": False},
            "split": {"fractions": [0.8, 0.1, 0.1], "stratify_by": "label",
                      "decontaminate": None}}
    res, out = prepare(tmp_path, tree)
    labels = {s: Counter(r["messages"][-1]["content"] for r in read_out(out, f"{s}.jsonl"))
              for s in ("train", "valid", "test")}
    assert labels == {"train": {"A": 72, "B": 8}, "valid": {"A": 9, "B": 1},
                      "test": {"A": 9, "B": 1}}
    assert res.metadata["splits"]["valid"]["by_stratum"] == {"A": 9, "B": 1}
    tree["split"]["oversample_train"] = True
    _, out = prepare(tmp_path, tree, out="over")
    labels = {s: Counter(r["messages"][-1]["content"] for r in read_out(out, f"{s}.jsonl"))
              for s in ("train", "valid", "test")}
    assert labels == {"train": {"A": 72, "B": 72}, "valid": {"A": 9, "B": 1},
                      "test": {"A": 9, "B": 1}}


def test_grouped_split_never_straddles(tmp_path):
    recs = [chat(f"conv {g} variant {v}", ko_answer(g * 10 + v), conv_id=g)
            for g in range(30) for v in range(3)]
    tree = {"sources": [{"name": "s", "path": str(write_jsonl(tmp_path / "g.jsonl", recs))}],
            "split": {"fractions": [0.6, 0.2, 0.2], "group_by": "conv_id",
                      "decontaminate": None}}
    _, out = prepare(tmp_path, tree)
    where = {}
    for s in ("train", "valid", "test"):
        for r in read_out(out, f"{s}.jsonl"):
            where.setdefault(r["messages"][0]["content"].split()[1], set()).add(s)
    assert len(where) == 30 and all(len(v) == 1 for v in where.values())
    assert Counter(next(iter(v)) for v in where.values()) == {"train": 18, "valid": 6, "test": 6}


def _leaky(tmp_path):
    # 40 pairs of near duplicates in different groups (near-dedup within sources is off)
    recs = []
    for i in range(40):
        recs += [chat(f"문의 {i}", ko_answer(i), pair=f"{i}a"),
                 chat(f"문의 {i}", ko_answer(i) + "요", pair=f"{i}b")]
    return {"sources": [{"name": "s", "path": str(write_jsonl(tmp_path / "l.jsonl", recs))}],
            "split": {"fractions": [0.5, 0.25, 0.25], "group_by": "pair"}}


def _leaks(out) -> int:
    near = NearDedup(0.8)
    held = read_out(out, "valid.jsonl") + read_out(out, "test.jsonl")
    for i, r in enumerate(held):
        near.insert(i, near.signature(r["messages"]))
    return sum(near.match(near.signature(r["messages"])) is not None
               for r in read_out(out, "train.jsonl"))


def test_near_duplicates_removed_across_splits(tmp_path):
    tree = _leaky(tmp_path)
    tree["split"]["decontaminate"] = None
    _, out = prepare(tmp_path, tree, out="leaky")
    assert _leaks(out) > 5  # without decontamination the test set leaks into training
    tree["split"]["decontaminate"] = 0.8
    res, out = prepare(tmp_path, tree, out="clean")
    assert _leaks(out) == 0
    dropped = sum(s["decontaminated"] for s in res.metadata["splits"].values())
    assert dropped > 5
    assert sum(r["filter"] == "decontaminate" for r in read_out(out, "rejected.jsonl")) == dropped


def test_same_inputs_and_seed_give_identical_bytes(tmp_path):
    tree = _leaky(tmp_path)
    tree["filters"] = {"near_dedup": 0.9}
    prepare(tmp_path, tree, out="a")
    prepare(tmp_path, tree, out="b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [".eden-output", "metadata.json", "rejected.jsonl", "test.jsonl",
                     "train.jsonl", "valid.jsonl"]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    import hashlib
    for n, info in meta["files"].items():
        assert hashlib.sha256((tmp_path / "a" / n).read_bytes()).hexdigest() == info["sha256"]
    assert meta["sources"][0]["sha256"] == hashlib.sha256(
        (tmp_path / "l.jsonl").read_bytes()).hexdigest()
    tree["seed"] = 1
    prepare(tmp_path, tree, out="c")
    assert (tmp_path / "c" / "train.jsonl").read_bytes() != \
        (tmp_path / "a" / "train.jsonl").read_bytes()


def test_existing_output_is_kept_unless_overwritten(tmp_path):
    tree = {"sources": [_source(tmp_path, "s", 10)], "split": {"fractions": [0.8, 0.2]}}
    recipe = write_recipe(tmp_path / "p.yaml", tree)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    proc = run_cli("data", "prepare", recipe, "--output", out)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (out / "mine.txt").read_text() == "keep me"
    proc = run_cli("data", "prepare", recipe, "--output", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "mine.txt").exists() and (out / "train.jsonl").is_file()
    assert "in the splits" in proc.stdout  # the funnel table
    proc = run_cli("data", "prepare", recipe, "--output", out)  # its own output: rewritten
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("data", "prepare", recipe, "--output", tmp_path, "--overwrite")
    assert proc.returncode == 2 and "overwrite the input" in proc.stderr
    proc = run_cli("data", "prepare", recipe, "--output", tmp_path / "dry", "--dry-run")
    assert proc.returncode == 0 and not (tmp_path / "dry").exists()
    assert not list(tmp_path.glob(".dry*")) and not list(tmp_path.glob(".out*"))


def test_training_reads_the_prepared_folder(tmp_path):
    tree = {"sources": [_source(tmp_path, "s", 20)], "split": {"fractions": [0.8, 0.1, 0.1]}}
    _, out = prepare(tmp_path, tree)
    splits = read_splits(DataSpec(train=[str(out)]), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 16, "valid": 2, "test": 2}
    with pytest.raises(UserError, match="no train.jsonl"):
        read_splits(DataSpec(train=[str(tmp_path)]), seed=0)


def test_recipe_errors_name_file_line_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("sources:\n"
                 "  - name: a\n    path: a.jsonl\n    share: 0.5\n"
                 "  - name: b\n    path: b.jsonl\n    share: 0.4\n    filtres: {}\n"
                 "split:\n  fractions: [0.8, 0.1]\n"
                 "filters:\n  min_answer_tokens: 10\n")
    with pytest.raises(UserErrors) as e:
        load_prepare(p)
    text = str(e.value)
    assert f"{p}:1: sources: shares sum to 0.9, not 1" in text
    assert f"{p}:8: sources.1.filtres: unknown key (did you mean sources.1.filters?)" in text
    assert "split.fractions: must be" in text
    assert "need the recipe's tokenizer" in text
    proc = run_cli("data", "prepare", p)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # --set reaches into a list of sources; extends lays a child over its parent
    (tmp_path / "parent.yaml").write_text(
        "filters: {near_dedup: 0.8}\nsources:\n  - {name: a, path: a.jsonl, share: 0.5}\n"
        "  - {name: b, path: b.jsonl, share: 0.4, filters: {near_dedup: 0.9}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\nsplit: {fractions: [0.9, 0.1]}\n")
    r = load_prepare(child, ["sources.1.share=0.5"])
    assert r.sources[1].share == 0.5 and r.split.fractions == [0.9, 0.1]
    # a source's filters are the top-level ones with its own keys laid over them
    assert (r.sources[0].filters.near_dedup, r.sources[1].filters.near_dedup) == (0.8, 0.9)


def test_data_keys_lists_prepare_keys():
    proc = run_cli("data", "keys")
    assert proc.returncode == 0
    for key in ("sources.N.where", "filters.near_dedup", "mix.replay_share",
                "split.stratify_by", "filters.pii.action"):
        assert f"\n{key} = " in "\n" + proc.stdout
