"""`eden-mlx data prepare` throughput and memory on synthetic Korean/English conversations.

Generates N conversations (default 20,000; `--n 200000` for the full figure) into a chat JSONL
file and an SQLite database (one row per turn, as an app exports it), then runs the pipeline
in a fresh process per configuration and reports records/s (records read / wall time of the
pipeline, imports excluded) and the process's peak RSS (VmHWM):

- jsonl: the checklist filters (where, PII redaction, Hangul/Latin shares, exact dedup), no
  near-dedup, no tokenizer
- jsonl+near: the same plus MinHash/LSH near-dedup (threshold 0.8, 64 permutations)
- jsonl+tokens: the same as jsonl plus answer-length filters with a tokenizer (the tiny model's
  fast BPE tokenizer, built locally: no download)
- sqlite: the database, rows grouped into conversations by the query's ORDER BY
- sqlite+near+tokens: everything at once

The anchor, measured right before each configuration, is a bare `json.loads` pass over the same
JSONL file (records/s): on a shared machine the ratio moves less than the raw figure.

    python benchmarks/data_prepare.py [--n 20000] [--only jsonl,sqlite] [--output FILE]

Writes benchmarks/results/data_prepare.json (or --output) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "data_prepare.json"
KO_WORDS = ["오늘", "내일", "여행", "음식", "공부", "운동", "건강", "회의", "계획", "준비", "방법",
            "정말", "아주", "조금", "먼저", "다음", "추천", "생각", "시간", "장소", "사람", "문제",
            "해결", "질문", "답변", "설명", "중요", "필요", "가능", "결과"]
EN_WORDS = ["today", "plan", "travel", "food", "study", "exercise", "meeting", "answer", "data",
            "model", "train", "check", "result", "simple", "quick", "method", "reason", "step"]
CHILD = """
import json, sys, time
from pathlib import Path
from mlx_eden.data.prepare.pipeline import run
from mlx_eden.data.prepare.spec import load_prepare
recipe = load_prepare(sys.argv[1])
t = time.perf_counter()
res = run(recipe, Path(sys.argv[2]))
elapsed = time.perf_counter() - t
read = sum(s["read"] for s in res.metadata["sources"])
kept = sum(s["kept"] for s in res.metadata["sources"])
# VmHWM: the peak RSS of this process image only (ru_maxrss would carry over the forking
# parent's resident pages across exec).
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")]
print(json.dumps({"seconds": elapsed, "read": read, "kept": kept, "peak_kib": hwm[0],
                  "train": res.metadata["splits"]["train"]["records"]}))
"""


def _sentence(rng: random.Random, korean: bool, n: int) -> str:
    words = KO_WORDS if korean else EN_WORDS
    return " ".join(rng.choice(words) for _ in range(n)) + (" 입니다." if korean else ".")


def conversations(n: int, seed: int = 0):
    """(id, satisfaction, [(role, text), ...]); 80% Korean, 2% exact and 3% near repeats,
    1% with a phone number or an email."""
    rng = random.Random(seed)
    made = []
    for i in range(n):
        if made and rng.random() < 0.05:
            cid, sat, turns = made[rng.randrange(len(made))]
            turns = list(turns)
            if rng.random() < 0.6:  # near: one word appended to the last answer
                turns[-1] = (turns[-1][0], turns[-1][1] + " " + rng.choice(KO_WORDS))
        else:
            korean = rng.random() < 0.8
            turns = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                turns += [("user", _sentence(rng, korean, rng.randint(5, 20))),
                          ("assistant", _sentence(rng, korean, rng.randint(20, 120)))]
            if rng.random() < 0.01:
                turns[0] = ("user", turns[0][1] + f" 연락처 010-{rng.randint(1000, 9999)}-1234")
        conv = (i, rng.randint(1, 5), turns)
        made.append(conv)
        yield conv


def generate(n: int, folder: Path) -> tuple[Path, Path]:
    jsonl, db = folder / "raw.jsonl", folder / "raw.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE turns (conv INTEGER, turn INTEGER, satisfaction INTEGER, "
                "role TEXT, body TEXT)")
    with open(jsonl, "w", encoding="utf-8") as f:
        for cid, sat, turns in conversations(n):
            f.write(json.dumps({"messages": [{"role": r, "content": t} for r, t in turns],
                                "satisfaction": sat}, ensure_ascii=False) + "\n")
            con.executemany("INSERT INTO turns VALUES (?, ?, ?, ?, ?)",
                            [(cid, j, sat, r, t) for j, (r, t) in enumerate(turns)])
    con.commit()
    con.close()
    return jsonl, db


def configs(jsonl: Path, db: Path, tok: Path) -> dict[str, dict]:
    checklist = {"min_hangul": 0.3, "max_latin": 0.5,
                 "pii": {"action": "redact", "kinds": ["email", "phone", "rrn", "card", "ip"]}}
    j = {"name": "j", "type": "jsonl", "path": str(jsonl), "where": ["satisfaction >= 3"]}
    s = {"name": "s", "type": "sqlite", "path": str(db), "query": "SELECT * FROM turns",
         "group_by": "conv", "order_by": "turn", "fields": {"role": "role", "content": "body"},
         "where": ["satisfaction >= 3"]}
    near = {"near_dedup": 0.8}
    tokens = {"min_answer_tokens": 10, "max_answer_tokens": 2000}
    split = {"fractions": [0.9, 0.05, 0.05], "decontaminate": None}
    return {
        "jsonl": {"sources": [j], "filters": checklist, "split": split},
        "jsonl+near": {"sources": [j], "filters": {**checklist, **near}, "split": split},
        "jsonl+tokens": {"sources": [j], "filters": {**checklist, **tokens},
                         "tokenizer": str(tok), "split": split},
        "sqlite": {"sources": [s], "filters": checklist, "split": split},
        "sqlite+near+tokens": {"sources": [s], "filters": {**checklist, **near, **tokens},
                               "tokenizer": str(tok), "split": split},
    }


def peak_rss(tree: dict, work: Path, name: str) -> tuple[dict, float]:
    """Run one configuration in a fresh process; its peak RSS (VmHWM) in MiB."""
    recipe = work / f"{name}.yaml"
    recipe.write_text(json.dumps(tree))
    pid = os.fork()
    if pid == 0:  # child: exec the measurement so its RSS is its own
        out = os.open(work / f"{name}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, "-c", CHILD, str(recipe), str(work / name)])
    _, status = os.waitpid(pid, 0)
    if status:
        raise SystemExit(f"{name} failed (status {status})")
    res = json.loads((work / f"{name}.out").read_text().strip().splitlines()[-1])
    res["records_per_s"] = round(res["read"] / res["seconds"])
    res["seconds"] = round(res["seconds"], 2)
    return res, round(res.pop("peak_kib") / 1024, 1)


def anchor(jsonl: Path) -> int:
    t = time.perf_counter()
    with open(jsonl, encoding="utf-8") as f:
        n = sum(1 for line in f if json.loads(line))
    return round(n / (time.perf_counter() - t))


def machine() -> dict:
    from importlib.metadata import version

    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "datasketch": version("datasketch")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="conversations to generate")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--output", type=Path, default=RESULT, help="results JSON")
    args = ap.parse_args()
    from mlx_eden.tiny import TinySpec, write_tiny

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t = time.perf_counter()
        jsonl, db = generate(args.n, work)
        gen_s = time.perf_counter() - t
        tok = write_tiny(work / "tiny", TinySpec())
        rows = {}
        for name, tree in configs(jsonl, db, tok).items():
            if args.only and name not in args.only.split(","):
                continue
            base = anchor(jsonl)  # measured next to each configuration: the machine is shared
            res, rss = peak_rss(tree, work, name)
            rows[name] = {**res, "peak_rss_mib": rss, "anchor_records_per_s": base,
                          "share_of_anchor": round(res["records_per_s"] / base, 3)}
            print(f"{name:20s} {res['records_per_s']:>8,} records/s  {rss:>7.1f} MiB peak RSS  "
                  f"read {res['read']:,} kept {res['kept']:,} ({res['seconds']} s; json.loads "
                  f"alone {base:,}/s)", flush=True)
        result = {"benchmark": "data_prepare", "n": args.n, "machine": machine(),
                  "generate_seconds": round(gen_s, 1),
                  "jsonl_mib": round(jsonl.stat().st_size / 2**20, 1), "configs": rows,
                  "load_average": os.getloadavg()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
