"""Helpers for the `data prepare` tests: write raw inputs and recipes, run the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mlx_eden.data.prepare.pipeline import run
from mlx_eden.data.prepare.spec import load_prepare

KO = ["김치찌개는 돼지고기와 김치를 먼저 볶은 뒤 물을 붓고 끓이면 깊은 맛이 납니다",
      "제주도 여행은 봄에 유채꽃이 필 때 가면 가장 아름다운 풍경을 볼 수 있어요",
      "잠을 잘 자려면 자기 전에 휴대폰을 멀리 두고 방을 어둡게 하는 것이 좋습니다",
      "영어 단어는 예문과 함께 외우면 훨씬 오래 기억에 남는다고 알려져 있어요",
      "걷기 운동은 하루 삼십 분씩 꾸준히 하면 심장 건강에 큰 도움이 됩니다"]


def ko_answer(i: int) -> str:
    """A distinct Korean answer (no two share many 5-character shingles)."""
    return f"{KO[i % len(KO)]} {i}번째 답변입니다 " + "가나다라마바사아자차카타파하"[i % 14] * (i % 7 + 1)


def chat(user: str, assistant: str | None, **extra) -> dict:
    msgs = [{"role": "user", "content": user}]
    if assistant is not None:
        msgs.append({"role": "assistant", "content": assistant})
    return {"messages": msgs, **extra}


def write_jsonl(path: Path, records) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_recipe(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def prepare(tmp: Path, tree: dict, out: str = "out", **kw):
    """Write the recipe, run the pipeline into tmp/out; returns (Result, output folder)."""
    recipe = load_prepare(write_recipe(tmp / f"{out}.yaml", tree))
    res = run(recipe, tmp / out, **kw)
    return res, tmp / out


def read_out(folder: Path, name: str) -> list[dict]:
    p = folder / name
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()] if p.exists() \
        else []


def funnel(meta: dict, source: str) -> dict[str, int]:
    s = next(s for s in meta["sources"] if s["name"] == source)
    return {row["step"]: row["dropped"] for row in s["filters"] if row["dropped"]}
