"""One table per option family (mlx_eden/registry.py, mlx_eden/qwen.py), and every choice of
every recipe Literal is covered by every backend or refused with a reason."""

import ast
import dataclasses
import json
import sys
import typing
from pathlib import Path

import pytest

from mlx_eden import recipe as R
from mlx_eden.data.formats import FORMATS
from mlx_eden.dtypes import resolve_dtype
from mlx_eden.errors import UserError
from mlx_eden.memory.fit import _optimizer
from mlx_eden.memory.planner import DTYPE_BYTES, optimizer_bytes
from mlx_eden.qwen import PROJECTION_PARENT, PROJECTIONS, TARGET_PRESETS
from mlx_eden.recipe import load_recipe
from mlx_eden.registry import BACKENDS, OPTIMIZERS, check_supported, unsupported

from .conftest import ROOT, needs_torch, run_cli

BACKEND_DIR = ROOT / "mlx_eden" / "backends"


def literal_keys() -> dict[str, tuple]:
    """{dotted key: choices} of every Literal field of the recipe tree."""
    out = {}

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif typing.get_origin(tp) is typing.Literal:
                out[f"{prefix}{f.name}"] = typing.get_args(tp)

    walk(R.Recipe, "")
    return out


def dict_keys(path: Path, name: str) -> set[str]:
    """The string keys of the module-level dict `name` in `path`, read with ast (so this test
    needs neither mlx nor torch to read a backend's table)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return {k.value for k in node.value.keys}
    raise AssertionError(f"{path} has no {name}")


def builders(backend: str) -> set[str]:
    return dict_keys(BACKEND_DIR / backend / "optimizers.py", "BUILDERS")


# Literals the backends never see: the neutral rooms handle them (data/, run/schedule.py, the
# backend choice itself). A new Literal key must be put here or in BACKEND_TABLES.
NEUTRAL = {"data.format": ("auto", *FORMATS), "data.template": None, "data.truncation": None,
           "train.schedule": None, "train.backend": ("auto", *BACKENDS), "data.reasoning": None,
           # the formulas are mlx_eden/objectives.py, run by both backends with their own ops
           "train.objective": ("sft", "dpo", "kto"), "train.dpo_loss": ("sigmoid", "ipo"),
           # how MLX keeps attention for backward (both exact); torch always runs its SDPA
           # flash kernel, which keeps no (L, L) array either way, so neither choice is refused
           "train.attention": ("blockwise", "fused")}
# Backend-facing Literals: the table each backend builds them from.
BACKEND_TABLES = {
    "train.optimizer": lambda b: builders(b),
    # "auto" is resolved to one of the table's dtypes (mlx_eden/dtypes.py) before a backend
    # builds anything; test_dtypes_and_qwen_facts_have_one_table checks what it resolves to.
    "model.dtype": lambda b: dict_keys(BACKEND_DIR / b / "model.py", "DTYPES") | {"auto"},
    "adapter.type": lambda b: {"lora", "dora"} if 'use_dora=a.type == "dora"' in
    (BACKEND_DIR / b / "model.py").read_text() else {"lora"},
    "adapter.init": lambda b: {"default", "loftq"} if (BACKEND_DIR / b / "loftq.py").is_file()
    else {"default"},
}
# Choices that are valid only together with other keys.
NEEDS = {"adapter.init=loftq": ["model.quantize.bits=4"]}


def test_every_literal_is_either_neutral_or_has_a_table_per_backend():
    keys = literal_keys()
    assert {"train.optimizer", "model.dtype", "adapter.type"} <= set(keys)
    assert set(keys) == set(NEUTRAL) | set(BACKEND_TABLES), "a new Literal needs a home here"
    for key, table in NEUTRAL.items():
        if table is not None:
            assert set(keys[key]) == set(table), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_choice_is_built_by_the_backend_or_refused_with_a_reason(backend):
    keys = literal_keys()
    base = load_recipe(ROOT / "recipes" / "tiny-demo.yaml")
    for key, table in BACKEND_TABLES.items():
        have = table(backend)
        for choice in keys[key]:
            recipe = load_recipe(ROOT / "recipes" / "tiny-demo.yaml",
                                 [f"{key}={choice}", *NEEDS.get(f"{key}={choice}", [])])
            gaps = dict(unsupported(recipe, backend))
            if choice in have:
                assert key not in gaps, (backend, key, choice)
            else:
                assert gaps.get(key), f"{backend} lacks {key}={choice} and gives no reason"
                with pytest.raises(UserError, match=key.replace(".", r"\.")):
                    check_supported(recipe, backend)
        assert not set(have) - set(keys[key]), (backend, key, "builds a choice nobody can pick")
    assert unsupported(base, backend) == []


def test_the_optimizer_table_is_the_recipes_and_the_backends():
    assert set(literal_keys()["train.optimizer"]) == set(OPTIMIZERS)
    for backend in BACKENDS:
        assert builders(backend) == {n for n, s in OPTIMIZERS.items() if backend in s.backends}
    assert builders("mlx") - builders("torch") == {"adamw8bit"}
    for spec in OPTIMIZERS.values():
        assert set(spec.lighter) <= set(OPTIMIZERS) and spec.name not in spec.lighter
        assert spec.refusal or set(spec.backends) == set(BACKENDS)
        assert _optimizer(load_recipe(None, [f"train.optimizer={spec.name}"])) == \
            [{"train.optimizer": o} for o in spec.lighter]  # --fit reads the same table


def test_the_planner_refuses_an_unknown_optimizer_instead_of_counting_zero():
    shapes = [(64, 8), (8, 64)]
    assert optimizer_bytes("adamw", shapes) == 2 * 4 * 1024
    assert optimizer_bytes("adafactor", shapes) == (72 + 72) * 4
    assert optimizer_bytes("adamw8bit", shapes) == 2 * (8 + 8) * (64 + 4)
    with pytest.raises(KeyError, match="OPTIMIZERS"):
        optimizer_bytes("lion", shapes)


def test_dtypes_and_qwen_facts_have_one_table():
    assert set(literal_keys()["model.dtype"]) == set(DTYPE_BYTES) | {"auto"}
    for fast_half in (True, False):
        for stored in (*DTYPE_BYTES, "int8", None):
            dtype, _ = resolve_dtype("auto", fast_half=fast_half, config={"torch_dtype": stored})
            assert dtype in DTYPE_BYTES
    assert set(PROJECTION_PARENT) == set(PROJECTIONS)
    assert set().union(*TARGET_PRESETS.values()) == set(PROJECTIONS)
    for name in ("model.py", "convert.py"):  # Qwen facts come from qwen.py, not from tiny.py
        source = (BACKEND_DIR / "mlx" / name).read_text()
        assert "from ...tiny import" not in source and "mlx_eden.tiny" not in source, name


def test_auto_keeps_a_recipe_torch_cannot_train_on_mlx_and_says_why():
    from mlx_eden.backends.base import choose_backend

    if sys.platform == "darwin":
        pytest.skip("auto picks mlx on Apple Silicon anyway")
    for override, key in (("train.optimizer=adamw8bit", "train.optimizer"),
                          ("model.quantize.bits=4", "model.quantize.bits")):
        name, why = choose_backend("auto", load_recipe(None, [override]))
        assert name == "mlx" and key in why


@needs_torch
def test_torch_with_adamw8bit_is_one_line_and_exit_2(tiny_qwen2, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", ROOT / "recipes" / "tiny-demo.yaml", "--set",
                   f"model.path={tiny_qwen2}", "--set", "train.optimizer=adamw8bit",
                   "--backend", "torch", "--output", out)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "train.optimizer" in lines[0] and "adamw8bit" in lines[0] and "--backend mlx" in lines[0]
    assert not out.exists()  # refused before anything was created


def test_run_json_memory_keys_come_from_the_typed_plan():
    from mlx_eden.run.runplan import RunPlan

    plan = RunPlan(predicted_peak_bytes=3 << 29, budget_bytes=32 << 30, device="mac-48gb")
    assert plan.budget_gb == 32.0 and plan.predicted_peak_gb == 1.5  # GiB: no "34.4 GB"
    assert json.loads(json.dumps(plan.run_json())) == {
        "predicted_peak_gb": 1.5, "budget_gb": 32.0, "budget_bytes": 32 << 30,
        "memory_device": "mac-48gb"}
