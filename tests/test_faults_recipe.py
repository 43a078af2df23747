"""Fault injection, recipe values: a bad value for every typed key, through YAML and --set, is one
error naming the key (file:line from YAML) and exit 2, never a traceback. The cases are generated
from the recipe's own declarations, so a key added later is covered without touching this file."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

import pytest
import yaml

from mlx_eden.errors import UserError
from mlx_eden.recipe import Recipe, _section_of, _strip_optional, load_recipe

from .conftest import run_cli


def assert_one_line_error(proc, code: int = 2) -> str:
    """The command failed with `code`, no traceback, and its last stderr line is the error."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") or "Error:" in last, proc.stderr  # click's own: "Error:"
    return last


def bad_values(tp) -> list:
    """Values that must be refused for a field of type `tp` (any _f field type)."""
    if dataclasses.is_dataclass(tp):
        return ["not-a-mapping"]
    if _section_of(tp):  # a path or a {path, weight} section (data.train entries)
        return [[1, 2], {"weight": "heavy"}]
    base, optional = _strip_optional(tp)
    origin = typing.get_origin(base)
    null = [] if optional else [None]
    if origin is Literal:
        return ["no-such-choice", *null]
    if origin is list:
        item = typing.get_args(base)[0]
        inner = ["scalar"] if dataclasses.is_dataclass(item) else \
            [[v] for v in bad_values(item) if v is not None][:1]
        return [True, *inner, *null]
    if origin is dict or base is dict:
        return [[1, 2], *null]
    if base is bool:
        return ["maybe", *null]
    if base is int:
        return ["abc", 1.5, *null]
    if base is float:
        return ["fast", float("nan"), float("inf"), *null]
    if base is str:
        return [[1, 2], *null]
    raise AssertionError(f"a recipe field type this test does not know: {tp}")


def leaves(cls=Recipe, prefix=""):
    """(dotted key, type) of every field, nested dataclasses included (and themselves)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        yield key, tp
        if dataclasses.is_dataclass(tp):
            yield from leaves(tp, key + ".")


CASES = [(key, v) for key, tp in leaves() for v in bad_values(tp)]


def test_every_key_has_cases():
    keys = {k for k, _ in CASES}
    assert {"train.learning_rate", "train.epochs", "adapter.targets", "data.split",
            "train.early_stopping.min_delta", "model.quantize"} <= keys
    assert len(keys) == len(list(leaves()))


def nested(key: str, value) -> dict:
    tree: dict = {}
    node = tree
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return tree


@pytest.mark.parametrize("key,value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_bad_value_in_yaml_names_file_line_and_key(tmp_path, key, value):
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(nested(key, value)))
    with pytest.raises(UserError) as e:
        load_recipe(f)
    text = str(e.value)
    assert key in text and f"{f}:" in text, text


@pytest.mark.parametrize("key,value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_bad_value_through_set_names_the_key(key, value):
    raw = yaml.safe_dump(value, default_flow_style=True).replace("\n...\n", "").strip()
    with pytest.raises(UserError) as e:
        load_recipe(None, [f"{key}={raw}"])
    assert key in str(e.value)


# Values of the right type that mean nothing: refused, not trained on.
MEANINGLESS = [("train.eval_batches", 0), ("train.early_stopping.min_delta", float("nan")),
               ("train.early_stopping.min_delta", -0.1), ("train.seed", -1),
               ("train.epochs", float("inf")), ("eval.max_new_tokens", 0),
               ("train.num_threads", 0), ("adapter.alpha", 0),
               ("data.train", "[{path: a.jsonl, weight: -1}]")]


@pytest.mark.parametrize("key,value", MEANINGLESS)
def test_meaningless_values_are_refused(key, value):
    with pytest.raises(UserError) as e:
        load_recipe(None, [f"{key}={value}"])
    assert key in str(e.value)


def test_duplicated_yaml_key_is_an_error_with_both_lines(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("train:\n  epochs: 3\nadapter:\n  rank: 4\ntrain:\n  batch_size: 2\n")
    with pytest.raises(UserError) as e:
        load_recipe(f)
    assert str(e.value).startswith(f"{f}:5: train: duplicated key (first at line 1)")


def test_recipe_that_is_not_utf8(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_recipe(f)


def test_cli_bad_values_exit_2_in_one_line(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("train:\n  learning_rate: fast\n  epochs: null\n")
    proc = run_cli("recipe", "check", f)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{f}:2: train.learning_rate: must be a number" in proc.stderr
    assert f"{f}:3: train.epochs: must be a number, got null" in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text("name: x\n")
    last = assert_one_line_error(run_cli("recipe", "show", good, "--set", "train.seed=-1"))
    assert "train.seed" in last


def test_a_bad_set_value_names_the_flag_not_a_line_of_the_file(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("name: x\ntrain:\n  learning_rate: 1.0e-4\n")
    with pytest.raises(UserError) as e:
        load_recipe(f, ["train.learning_rate=fast"])
    assert str(e.value).startswith("--set: train.learning_rate: must be a number"), str(e.value)
