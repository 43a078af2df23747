"""Every shipped recipe runs end to end for a few steps on a tiny model, with the model and data
swapped by --set, so no recipe rots. A later stage or round continues from the dry-run adapter
of the one before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx_eden.backends.base import has_module
from mlx_eden.recipe import load_recipe

from .conftest import ROOT, SAMPLES, run_cli

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
SAMPLE_FOR = {"alpaca": "alpaca", "chat": "chat", "auto": "chat", "completions": "chat",
              "text": "chat", "dpo": "dpo", "kto": "kto"}


def dry_run_sets(path: Path, model: Path, out: Path) -> list[str]:
    """Overrides that keep the recipe's own adapter, schedule and data handling but swap in the
    tiny model and bundled samples and cut the run to two optimizer steps."""
    recipe = load_recipe(path)
    kind = "classifier" if recipe.eval.labels else SAMPLE_FOR[recipe.data.format]
    samples = SAMPLES / kind
    sets = {
        "model.path": model,
        "data.train": samples / "train.jsonl",
        "data.max_seq_length": 128,
        "model.dtype": "float32",  # bf16 matmuls are slow on MLX's CPU backend (fast on Metal)
        "train.max_steps": 2,
        "train.batch_size": 2,
        "train.grad_accumulation": min(recipe.train.grad_accumulation, 2),
        "train.eval_every": 0, "train.save_every": 0, "train.eval_batches": 1,
        "output.dir": out,
    }
    weights = [e.weight for e in recipe.data.train if not isinstance(e, str)]
    if weights:  # keep the weighted mix: the bundled train and test files stand in for sources
        sets["data.train"] = (f"[{{path: {samples / 'train.jsonl'}, weight: {weights[0]}}}, "
                              f"{{path: {samples / 'test.jsonl'}, weight: {weights[-1]}}}]")
    if recipe.data.valid or not recipe.data.split:
        sets["data.valid"] = samples / "valid.jsonl"
    if recipe.data.test:
        sets["data.test"] = samples / "test.jsonl"
    if recipe.adapter.init_from:
        sets["adapter.init_from"] = out.parent / previous(recipe)
    return [f"{k}={v}" for k, v in sets.items()]


def previous(recipe) -> str:
    """The run an `init_from: runs/<name>/<folder>` continues, as '<name>/<folder>'; <name>
    is the shipped recipe of that name (the previous stage or round)."""
    name, folder = Path(recipe.adapter.init_from).parts[-2:]
    assert (ROOT / "recipes" / f"{name}.yaml").is_file(), recipe.adapter.init_from
    return f"{name}/{folder}"


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory, tiny_small, tiny_spare):
    return tmp_path_factory.mktemp("dry"), {False: tiny_small, True: tiny_spare}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_dry_run(path, dry_runs):
    root, models = dry_runs
    recipe = load_recipe(path)
    model = models[bool(recipe.tokens.add)]  # new tokens need spare embedding rows
    # The extra's own packages, not our module (which is always there): without them the run
    # would stop with "needs the torch extra" (exit 2).
    if recipe.train.backend == "torch" and not (has_module("torch") and has_module("peft")):
        pytest.skip("needs the torch extra (torch, peft)")
    if recipe.adapter.init_from and not (root / previous(recipe)).exists():
        # Continue the previous stage or round's own dry run (run it first if needed).
        test_recipe_dry_run(ROOT / "recipes" / f"{Path(previous(recipe)).parent}.yaml", dry_runs)
    out = root / path.stem
    if not (out / "run.json").exists():  # else it already ran, as the next one's prerequisite
        sets = dry_run_sets(path, model, out)
        args = ["train", path, "--no-dashboard"] + [x for s in sets for x in ("--set", s)]
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in steps if e["event"] == "train"] == [1, 2]
    assert (out / "adapter" / "adapters.safetensors").is_file()
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed"
    shipped, ran = recipe.to_dict()["adapter"], info["recipe"]["adapter"]
    shipped.pop("init_from"), ran.pop("init_from")
    assert ran == shipped  # the dry run exercised the recipe's own adapter settings
    if any(not isinstance(e, str) for e in recipe.data.train):  # and its weighted mix
        assert [m["weight"] for m in info["data_mix"].values()] == \
            [e.weight for e in recipe.data.train]


def test_hub_id_without_network_names_the_local_override(tmp_path):
    proc = run_cli("train", ROOT / "recipes" / "qwen2.5-7b-alpaca.yaml",
                   "--set", "model.path=Qwen/Not-A-Real-Model-For-Tests", "--no-dashboard",
                   "--output", tmp_path / "x", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("error: model.path: cannot download Qwen/Not-A-Real-Model-For-Tests")
    assert "--set model.path=DIR" in line
