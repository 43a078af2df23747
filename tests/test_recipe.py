
import pytest

from mlx_eden.errors import UserError, UserErrors
from mlx_eden.recipe import load_recipe, recipe_to_yaml

from .conftest import ROOT, run_cli

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name
    assert recipe.model.path
    assert recipe.data.train


def test_typo_names_file_line_and_closest_key(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("name: x\ntrain:\n  batch_size: 2\n  learing_rate: 1e-4\n")
    with pytest.raises(UserError) as e:
        load_recipe(f)
    assert str(e.value) == (f"{f}:4: train.learing_rate: unknown key "
                            "(did you mean train.learning_rate?)")


def test_all_problems_are_collected(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("adapter:\n  rank: -1\n  typ: dora\ntrain:\n  schedule: cosin\n"
                 "  warmup_steps: 5\n  warmup_ratio: 0.1\n")
    with pytest.raises(UserErrors) as e:
        load_recipe(f)
    text = str(e.value)
    assert "adapter.typ: unknown key (did you mean adapter.type?)" in text
    assert f"{f}:5: train.schedule: must be one of 'constant', 'linear', 'cosine', got 'cosin' " \
           "(did you mean 'cosine'?)" in text
    assert "train.warmup_ratio: set warmup_steps or warmup_ratio, not both" in text
    assert f"{f}:2: adapter.rank: must be positive" in text
    assert len(e.value.errors) == 4


def test_set_overrides_are_type_checked():
    r = load_recipe(ROOT / "recipes" / "tiny-demo.yaml",
                    ["train.learning_rate=3e-4", "adapter.targets=[q_proj, v_proj]",
                     "train.max_steps=7", "model.quantize.bits=4"])
    assert r.train.learning_rate == 3e-4
    assert r.adapter.target_names == ("q_proj", "v_proj")
    assert r.train.max_steps == 7 and r.model.quantize.bits == 4
    with pytest.raises(UserError, match=r"train.batch_size: must be an integer, got 'two'"):
        load_recipe(ROOT / "recipes" / "tiny-demo.yaml", ["train.batch_size=two"])
    with pytest.raises(UserError, match=r"did you mean train.batch_size"):
        load_recipe(None, ["train.batchsize=2"])


def test_scale_and_presets():
    r = load_recipe(None, ["adapter.rank=16", "adapter.alpha=32", "adapter.targets=attention"])
    assert r.adapter.scale == 2.0
    assert r.adapter.target_names == ("q_proj", "k_proj", "v_proj", "o_proj")
    r = load_recipe(None, ["adapter.rank=16", "adapter.alpha=32", "adapter.rslora=true"])
    assert r.adapter.scale == 8.0


def test_show_round_trips(tmp_path):
    r = load_recipe(ROOT / "recipes" / "tiny-demo.yaml")
    again = tmp_path / "again.yaml"
    again.write_text(recipe_to_yaml(r))
    assert load_recipe(again) == r


def test_cli_check_reports_one_line_per_problem_and_exit_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  optimiser: adamw\n")
    proc = run_cli("recipe", "check", f)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {f}:2: train.optimiser: unknown key "
                                   "(did you mean train.optimizer?)")
    assert "Traceback" not in proc.stderr


def test_extends_merges_and_points_errors_at_the_right_file(tmp_path):
    parent = tmp_path / "base.yaml"
    parent.write_text("name: base\ntrain:\n  learning_rate: 2.0e-5\n  epochs: 3\n"
                      "adapter:\n  rank: 64\n  alpha: 128\n")
    child = tmp_path / "round2.yaml"
    child.write_text("extends: base.yaml\nname: round2\ntrain:\n  learning_rate: 1.5e-5\n")
    r = load_recipe(child)
    assert (r.name, r.train.learning_rate, r.train.epochs, r.adapter.rank) == \
        ("round2", 1.5e-5, 3.0, 64)
    parent.write_text(parent.read_text() + "  droput: 0.1\n")
    with pytest.raises(UserError) as e:
        load_recipe(child)
    assert str(e.value).startswith(f"{parent}:8: adapter.droput: unknown key")
    parent.write_text("extends: round2.yaml\n")
    with pytest.raises(UserError, match="extends forms a cycle"):
        load_recipe(child)


def test_recipe_keys_lists_allowed_values_and_extends():
    proc = run_cli("recipe", "keys", check=True)
    out = proc.stdout
    assert out.startswith("extends = ")
    assert "model.dtype = 'auto'  [one of 'auto', 'bfloat16', 'float16', 'float32']" in out
    assert "adapter.type = 'lora'  [one of 'lora', 'dora']" in out
    assert "model.revision = None  [a string or null]" in out
