"""`data prepare` sources and filters: every source type (a real SQLite file built here), every
filter with exact counts, rejected.jsonl, the transforms."""

from __future__ import annotations

import json
import sqlite3

from .conftest import run_cli
from .prepare_helpers import chat, funnel, ko_answer, prepare, read_out, write_jsonl


def test_every_filter_drops_exactly_its_records(tmp_path, tiny_qwen2):
    near = ko_answer(2)
    recs = [chat("질문 0", ko_answer(0), sat=5), chat("질문 1", ko_answer(1), sat=4),
            chat("질문 2", near, sat=4),
            '{"messages": [',                                            # malformed
            chat("질문 3", ko_answer(3), sat=1),                          # where
            chat("질문 4", "   ", sat=5),                                 # empty turn
            chat("질문 5", None, sat=5),                                  # no assistant turn
            chat("질문 6", "This answer is written in English only.", sat=5),  # hangul share
            chat("질문 7", ko_answer(7) + " okay", sat=5),                # latin share
            chat("질문 8", ko_answer(8) * 12, sat=5),                     # answer tokens
            chat("질문 0", ko_answer(0), sat=5),                          # exact duplicate
            chat("질문 2", near + "요", sat=5)]                            # near duplicate
    src = write_jsonl(tmp_path / "raw.jsonl", recs)
    tree = {"tokenizer": str(tiny_qwen2), "sources": [
        {"name": "chats", "path": str(src), "where": ["sat >= 3"]}],
        "filters": {"min_hangul": 0.5, "max_latin": 0.01, "min_answer_tokens": 5,
                    "max_answer_tokens": 400, "near_dedup": 0.7},
        "split": {"fractions": [1.0, 0.0]}}
    res, out = prepare(tmp_path, tree)
    assert funnel(res.metadata, "chats") == {
        "malformed": 1, "where": 1, "empty turn": 1, "no assistant turn": 1, "hangul share": 1,
        "latin share": 1, "answer tokens": 1, "exact duplicate": 1, "near duplicate": 1}
    kept = read_out(out, "train.jsonl")
    assert sorted(r["messages"][0]["content"] for r in kept) == ["질문 0", "질문 1", "질문 2"]
    rejected = read_out(out, "rejected.jsonl")
    assert sorted(r["filter"] for r in rejected) == sorted(funnel(res.metadata, "chats"))
    bad = next(r for r in rejected if r["filter"] == "malformed")
    assert bad["where"] == f"{src}:4" and "not valid JSON" in bad["reason"]
    # in/out chain: each step's input is the previous step's input minus its drops
    steps = res.metadata["sources"][0]["filters"]
    assert steps[0]["in"] == 12 and res.metadata["sources"][0]["kept"] == 3
    assert all(a["in"] - a["dropped"] == b["in"] for a, b in zip(steps, steps[1:], strict=False))
    assert res.metadata["length_unit"] == "tokens"


def test_filters_off_keep_everything_well_formed(tmp_path):
    """The same input with the checklist off: only structural problems are dropped (so the
    counts above come from the filters, not from the input)."""
    recs = [chat("q", "This answer is written in English only."), chat("q", "   "),
            chat("q", ko_answer(1)), chat("q", ko_answer(1))]
    src = write_jsonl(tmp_path / "raw.jsonl", recs)
    tree = {"sources": [{"name": "s", "path": str(src)}],
            "filters": {"exact_dedup": False, "drop_empty": False},
            "split": {"fractions": [1.0, 0.0]}}
    res, out = prepare(tmp_path, tree)
    assert funnel(res.metadata, "s") == {}
    assert len(read_out(out, "train.jsonl")) == 4


def _app_db(path):
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE conv (id INTEGER PRIMARY KEY, satisfaction INTEGER, topic TEXT);"
        "CREATE TABLE msg (conv_id INTEGER, turn INTEGER, sender TEXT, body TEXT);")
    for cid, sat in ((1, 5), (2, 2), (3, 4)):
        con.execute("INSERT INTO conv VALUES (?, ?, ?)", (cid, sat, f"t{cid % 2}"))
        # inserted out of order: the turn column orders them
        for turn, sender in ((1, "eden"), (0, "me"), (3, "eden"), (2, "me")):
            con.execute("INSERT INTO msg VALUES (?, ?, ?, ?)",
                        (cid, turn, sender, f"{cid}-{turn} " + ko_answer(cid * 10 + turn)))
    con.execute("INSERT INTO msg VALUES (4, 0, 'robot', 'x')")  # no conv row: dropped by JOIN
    con.commit()
    con.close()
    return path


SQLITE_SOURCE = {"name": "app", "type": "sqlite",
                 "query": "SELECT c.id, c.satisfaction, m.turn, m.sender, m.body "
                          "FROM msg m JOIN conv c ON c.id = m.conv_id",
                 "group_by": "id", "order_by": "turn", "fields": {"role": "sender",
                                                                  "content": "body"},
                 "roles": {"me": "user", "eden": "assistant"}, "where": ["satisfaction >= 3"]}


def test_sqlite_rows_grouped_into_ordered_conversations(tmp_path):
    db = _app_db(tmp_path / "app.sqlite")
    tree = {"sources": [{**SQLITE_SOURCE, "path": str(db)}], "split": {"fractions": [1.0, 0.0]}}
    res, out = prepare(tmp_path, tree)
    convs = sorted(read_out(out, "train.jsonl"), key=lambda r: r["messages"][0]["content"])
    assert len(convs) == 2 and funnel(res.metadata, "app") == {"where": 1}
    for cid, conv in zip((1, 3), convs, strict=True):
        assert [m["role"] for m in conv["messages"]] == ["user", "assistant"] * 2
        assert [m["content"].split()[0] for m in conv["messages"]] == \
            [f"{cid}-{t}" for t in range(4)]
    where = read_out(out, "rejected.jsonl")[0]["where"]
    assert where.startswith(f"{db}:msg#")  # table and row of the rejected conversation


def test_sqlite_errors_are_one_line_before_any_output(tmp_path):
    db = _app_db(tmp_path / "app.sqlite")
    cases = {"no such table": {"query": "SELECT * FROM nope"},
             "no column turnz": {"order_by": "turnz"},
             "field 'text' is missing": {"fields": {"role": "sender", "content": "text"}}}
    for i, (needle, change) in enumerate(cases.items()):
        (tmp_path / f"p{i}.yaml").write_text(json.dumps(
            {"sources": [{**SQLITE_SOURCE, "path": str(db), **change}]}))
        proc = run_cli("data", "prepare", tmp_path / f"p{i}.yaml", "--output", tmp_path / "out")
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()
        assert not list(tmp_path.glob(".out*"))  # no temporary folder left behind


def test_csv_source_with_malformed_row(tmp_path):
    csv_file = tmp_path / "faq.csv"
    csv_file.write_text("question,answer,label\n"
                        f"q1,{ko_answer(1)},a\n"
                        f"q2,{ko_answer(2)},b,extra\n"
                        f"\"q3\nspans lines\",{ko_answer(3)},a\n"
                        f"q4,{ko_answer(4)},b\n", encoding="utf-8")
    tree = {"sources": [{"name": "faq", "type": "csv", "path": str(csv_file),
                         "fields": {"user": "question", "assistant": "answer"},
                         "where": ["label != c"]}],
            "split": {"fractions": [1.0, 0.0]}}
    res, out = prepare(tmp_path, tree)
    assert funnel(res.metadata, "faq") == {"malformed": 1}
    assert read_out(out, "rejected.jsonl")[0]["where"] == f"{csv_file}:3"
    users = sorted(r["messages"][0]["content"] for r in read_out(out, "train.jsonl"))
    assert users == ["q1", "q3\nspans lines", "q4"]
    proc = run_cli("data", "prepare", out.with_suffix(".yaml"), "--output", tmp_path / "o2",
                   "--strict")
    assert proc.returncode == 2 and f"{csv_file}:3" in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_agent_logs_get_a_system_prompt_per_role(tmp_path):
    logs = [{"task": {"description": f"task {i}"}, "agent": {"role": role},
             "execution": {"output": ko_answer(i), "success": i != 3}}
            for i, role in enumerate(["coder", "reviewer", "planner", "coder", "nobody"])]
    src = write_jsonl(tmp_path / "logs.jsonl", logs)
    tree = {"sources": [{"name": "agents", "path": str(src),
                         "fields": {"user": "task.description", "assistant": "execution.output"},
                         "system_prompt_by": "agent.role",
                         "system_prompts": {"coder": "CODE", "reviewer": "REVIEW"},
                         "where": ["execution.success == true"]}],
            "split": {"fractions": [1.0, 0.0]}}
    res, out = prepare(tmp_path, tree)
    got = {r["messages"][1]["content"]: r["messages"][0] for r in read_out(out, "train.jsonl")}
    assert got == {"task 0": {"role": "system", "content": "CODE"},
                   "task 1": {"role": "system", "content": "REVIEW"}}
    assert funnel(res.metadata, "agents") == {"where": 1, "malformed": 2}  # planner, nobody
    assert "no system prompt for agent.role='planner'" in read_out(out, "rejected.jsonl")[0][
        "reason"]


def test_style_prefix_and_retrieved_context_in_the_system_message(tmp_path):
    recs = [{"system": "You are terse.", "instruction": "Deploy", "input": "env: prod",
             "output": "done", "style": "terse", "docs": "runbook: use blue/green"},
            {"instruction": "Explain", "output": "at length", "style": "VERBOSE", "docs": ""}]
    src = write_jsonl(tmp_path / "style.jsonl", recs)
    tree = {"sources": [{"name": "s", "path": str(src),
                         "fields": {"style": "style", "context": "docs"}}],
            "split": {"fractions": [1.0, 0.0]}, "seed": 3}
    _, out = prepare(tmp_path, tree)
    got = sorted((r["messages"] for r in read_out(out, "train.jsonl")),
                 key=lambda m: m[-1]["content"])
    assert got[0] == [
        {"role": "system", "content": "<STYLE_VERBOSE>"},
        {"role": "user", "content": "Explain"}, {"role": "assistant", "content": "at length"}]
    assert got[1][0] == {"role": "system", "content": "<STYLE_TERSE> You are terse.\n\n"
                         "Context:\nrunbook: use blue/green"}
    assert got[1][1] == {"role": "user", "content": "Deploy\n\nenv: prod"}


def test_near_dedup_confirms_lsh_candidates_against_the_threshold():
    """LSH bands also return pairs below the threshold; only a MinHash estimate at or above it
    counts as a duplicate. Pairs at true Jaccard 0.6-0.72 (threshold 0.8) are kept."""
    import random

    from mlx_eden.data.prepare.dedup import NearDedup, dedup_text, shingle_hashes

    rng = random.Random(0)
    letters = "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허"
    near, kept, tried = NearDedup(0.8), 0, 0
    for i in range(150):
        base = "".join(rng.choice(letters) for _ in range(200))
        variant = list(base)
        for j in rng.sample(range(200), 7):
            variant[j] = "X"
        a = [{"role": "user", "content": base}]
        b = [{"role": "user", "content": "".join(variant)}]
        sa = set(shingle_hashes(dedup_text(a), 5).tolist())
        sb = set(shingle_hashes(dedup_text(b), 5).tolist())
        if not 0.6 <= len(sa & sb) / len(sa | sb) <= 0.72:
            continue
        tried += 1
        near.add_if_new(2 * i, a)
        kept += near.add_if_new(2 * i + 1, b)
    assert tried >= 100
    # measured: 102 of 104 kept; accepting every LSH candidate keeps 92
    assert kept >= 0.97 * tried


def test_nfc_normalizes_decomposed_korean_and_counts_it(tmp_path):
    """NFD Hangul (macOS copy-paste) is composed when filters.nfc is on; off leaves it alone.
    NFD also splits the exact-duplicate check: the NFD and NFC copies are one conversation."""
    import unicodedata

    nfc = "안녕하세요, 오늘 날씨가 좋네요"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    src = write_jsonl(tmp_path / "nfd.jsonl", [chat("질문", nfd), chat("질문", nfc),
                                               chat("다른 질문", "그냥 답")])
    tree = {"sources": [{"name": "s", "path": str(src)}], "split": {"fractions": [1.0, 0.0]}}
    for on, kept, changed in ((True, 2, 1), (False, 3, 0)):
        tree["filters"] = {"nfc": on}
        res, out = prepare(tmp_path, tree, out=f"out-{on}")
        answers = [r["messages"][-1]["content"] for r in read_out(out, "train.jsonl")]
        assert len(answers) == kept
        assert (nfd in answers) is not on
        meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
        assert meta["sources"][0]["nfc_normalized"] == changed
