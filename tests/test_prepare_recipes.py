"""Every shipped prepare recipe (recipes/prepare/) runs end to end on the bundled raw samples
(data/samples/raw; the SQLite database is built here by its script), with paths and the
tokenizer swapped by --set, so no prepare recipe rots. Round 2 replays round 1's output."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from mlx_eden.data.prepare.spec import load_prepare

from .conftest import ROOT, SAMPLES, run_cli

RAW = SAMPLES / "raw"
RECIPES = sorted((ROOT / "recipes" / "prepare").glob("*.yaml"))
SAMPLE_FOR = {"general": "ko_general.jsonl", "coding": "ko_code.jsonl",
              "reasoning": "ko_reasoning.jsonl", "agents": "agent_logs.jsonl",
              "iac": "style_iac.jsonl"}
# The tiny model's byte-level BPE spends ~2.4 tokens per Hangul syllable (Qwen's ~0.7), so the
# answer-length ceiling is raised for it; every other filter runs as shipped.
TINY_TOKENS = {"filters.max_answer_tokens": 2000}


def _build_module():
    spec = importlib.util.spec_from_file_location("raw_build", RAW / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory) -> Path:
    return _build_module().write_sqlite(tmp_path_factory.mktemp("raw") / "app.sqlite")


def test_committed_samples_match_their_script(tmp_path):
    _build_module().write_jsonl(tmp_path)
    for p in tmp_path.glob("*.jsonl"):
        assert p.read_bytes() == (RAW / p.name).read_bytes(), p.name


def _sets(path: Path, db: Path, tok: Path, out_root: Path) -> list[str]:
    recipe = load_prepare(path)
    sets = {"output": out_root / path.stem}
    if recipe.tokenizer:
        sets.update({"tokenizer": tok, **TINY_TOKENS})
    for i, s in enumerate(recipe.sources):
        sets[f"sources.{i}.path"] = db if s.type == "sqlite" else RAW / SAMPLE_FOR[s.name]
    if recipe.mix.replay:
        first = out_root / "eden-32b-round1" / "train.jsonl"
        sets["mix.replay"] = first if "my-chats" in recipe.mix.replay[0] else \
            RAW / "style_stage1.jsonl"
    return [f"{k}={v}" for k, v in sets.items()]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_prepare_recipe_runs_on_samples(path, sample_db, tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "prepared"
    root.mkdir(exist_ok=True)
    if "round2" in path.stem and not (root / "eden-32b-round1").exists():
        test_prepare_recipe_runs_on_samples(path.parent / "eden-32b-round1.yaml", sample_db,
                                            tiny_qwen2, tmp_path_factory)
    out = root / path.stem
    if out.exists():
        return  # already ran as the next recipe's prerequisite
    args = [x for s in _sets(path, sample_db, tiny_qwen2, root) for x in ("--set", s)]
    proc = run_cli("data", "prepare", path, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["files"]["train.jsonl"]["records"] > 0
    for name, info in meta["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"]
    assert all(s["kept"] > 0 for s in meta["sources"]), meta["sources"]
    shipped = load_prepare(path)
    assert meta["recipe"]["split"] == json.loads(json.dumps(shipped.to_dict()["split"]))



def test_eden_round1_applies_the_checklist(sample_db, tiny_qwen2, tmp_path_factory):
    path = ROOT / "recipes" / "prepare" / "eden-32b-round1.yaml"
    root = tmp_path_factory.getbasetemp() / "prepared"
    if not (root / path.stem).exists():
        test_prepare_recipe_runs_on_samples(path, sample_db, tiny_qwen2, tmp_path_factory)
    meta = json.loads((root / path.stem / "metadata.json").read_text())
    own = {r["step"]: r["dropped"] for r in meta["sources"][0]["filters"]}
    assert own["where"] > 0 and own["latin share"] + own["hangul share"] > 0
    assert own["answer tokens"] > 0 and own["exact duplicate"] > 0
    assert meta["sources"][0]["pii_redacted"]
    text = (root / path.stem / "train.jsonl").read_text(encoding="utf-8")
    assert "010-" not in text and "@example" not in text
    realized = meta["mix"]["realized"]
    assert realized["own"] / sum(realized.values()) == pytest.approx(0.7, abs=0.05)
