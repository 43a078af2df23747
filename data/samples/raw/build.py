"""Tiny raw inputs for `eden-mlx data prepare` (deterministic; the JSONL files are committed,
the SQLite database is built on demand so no binary is committed):

    python data/samples/raw/build.py            # rewrites the JSONL files and app.sqlite here

- app.sqlite: the MacBook app's export: conversations(id, topic, satisfaction) and one row per
  turn in messages(conversation_id, turn, sender 'me'/'eden', body). Korean, with low-rated
  conversations, personal information, English-heavy and too-short answers, duplicates.
- agent_logs.jsonl: the EPYC team's interaction logs ({"task", "agent", "execution"}), with a
  failed run, a malformed line, duplicates and IP addresses.
- ko_general / ko_code / ko_reasoning.jsonl: chat-format sources to mix in.
- style_iac.jsonl: stage-2 records (system, instruction, input, output, style).
- style_stage1.jsonl: stage-1 output (chat, style tag in the system prompt), the replay source.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).parent
TOPICS = {
    "요리": ["김치찌개", "된장국", "비빔밥", "불고기", "잡채", "떡볶이"],
    "여행": ["제주도", "부산", "강릉", "경주", "전주", "여수"],
    "건강": ["수면", "운동", "스트레칭", "물 마시기", "걷기", "명상"],
    "공부": ["영어 단어", "수학 공식", "역사 연표", "코딩 기초", "글쓰기", "독서"],
}
ANSWER = ("{x}에 대해 말씀드리면, 먼저 기본을 차근차근 익히는 것이 가장 중요합니다. 처음에는 "
          "작은 목표를 세우고 매일 조금씩 꾸준히 해 보세요. 익숙해지면 조금씩 범위를 넓히고, "
          "잘 된 점과 아쉬운 점을 짧게 기록해 두면 다음에 큰 도움이 됩니다. {n}번째 방법으로는 "
          "주변 사람들과 경험을 나누며 서로 배우는 것을 추천드립니다.")
PII = ["제 메일은 minsu.kim{n}@example.co.kr 입니다.", "연락처는 010-{a}-{b} 이에요.",
       "주민번호 9{n}0101-1{a}{b2} 로 예약했어요.", "사무실 번호는 02-{a}-{b} 입니다."]


def _turns(rng: random.Random, i: int, topic: str) -> list[tuple[str, str]]:
    x = rng.choice(TOPICS[topic])
    q = f"{x}을(를) 잘 하려면 어떻게 해야 하나요? ({i}번 질문)"
    if i % 9 == 4:  # personal information in the user's turn
        q += " " + rng.choice(PII).format(n=i % 10, a=1000 + i, b=5000 + i, b2=f"{i:06d}"[-6:])
    a = ANSWER.format(x=x, n=i)
    if i % 11 == 7:  # an English-heavy answer (language mixing)
        a = f"{x}: first, practice the basics every day and keep short notes on your progress."
    if i % 13 == 5:  # too short to teach anything
        a = "네."
    turns = [("me", q), ("eden", a)]
    if i % 3 == 0:
        turns += [("me", f"{x} 말고 다른 것도 알려 주세요."), ("eden", ANSWER.format(x=x, n=i + 1))]
    return turns


def write_sqlite(path: Path, n: int = 60) -> Path:
    """The app's database: n conversations (ids 1..n), some duplicated and low-rated."""
    path = Path(path)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE conversations (id INTEGER PRIMARY KEY, topic TEXT, satisfaction INTEGER);"
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER, turn INTEGER,"
        " sender TEXT, body TEXT);")
    topics = list(TOPICS)
    for i in range(1, n + 1):
        topic = topics[i % len(topics)]
        src = i - 1 if i % 17 == 0 else i  # every 17th repeats the one before: an exact duplicate
        con.execute("INSERT INTO conversations VALUES (?, ?, ?)", (i, topic, 1 + (i * 7) % 5))
        for t, (sender, body) in enumerate(_turns(random.Random(src), src, topics[src % 4])):
            con.execute("INSERT INTO messages (conversation_id, turn, sender, body) "
                        "VALUES (?, ?, ?, ?)", (i, t, sender, body))
    con.commit()
    con.close()
    return path


def _agent_logs(n: int = 40) -> list[str]:
    roles = ["coder", "reviewer", "tester"]
    kinds = ["bugfix", "feature", "refactor"]
    lines = []
    for i in range(n):
        role, kind = roles[i % 3], kinds[(i // 3) % 3]
        task = {"description": f"Task {i}: {kind} in module m{i % 7} (ticket T-{100 + i})",
                "type": kind}
        out = f"Done: {kind} for m{i % 7}, step {i}. Changed {i % 5 + 1} files and ran the tests."
        if i % 10 == 3:
            out += f" Deployed to 10.0.{i}.12 for checks."
        rec = {"task": task, "agent": {"role": role},
               "execution": {"output": out, "success": i % 8 != 5}}
        lines.append(json.dumps(rec, ensure_ascii=False))
        if i % 12 == 6:
            lines.append(json.dumps(rec, ensure_ascii=False))  # logged twice
    lines.insert(17, '{"task": {"description": "truncated log line"')
    return lines


def _chats(kind: str, n: int) -> list[str]:
    lines = []
    for i in range(n):
        if kind == "code":
            q, a = (f"파이썬으로 숫자 {i}의 제곱을 구하는 방법은?",
                    f"`{i} ** 2`로 계산하면 {i * i}입니다. 함수로는 def sq(x): return x * x 처럼 씁니다.")
        elif kind == "reasoning":
            q, a = (f"사과가 {i + 3}개 있고 {i}개를 먹으면 몇 개가 남나요?",
                    f"처음 {i + 3}개에서 {i}개를 빼면 되므로 남는 사과는 3개입니다.")
        else:
            q, a = (f"오늘 {i}번째로 인사드려요. 기분이 어떠세요?",
                    f"반갑습니다! 저는 늘 즐겁게 대화하고 있어요. {i}번째 인사도 고맙습니다.")
        lines.append(json.dumps({"messages": [{"role": "user", "content": q},
                                              {"role": "assistant", "content": a}]},
                                ensure_ascii=False))
    return lines


def _style(n: int = 40) -> list[str]:
    lines = []
    tools = ["terraform", "ansible", "helm", "pulumi"]
    for i in range(n):
        style = "TERSE" if i % 10 else "VERBOSE"  # 90/10: the natural ratio
        tool = tools[i % 4]
        out = (f"{tool} apply -target=module.svc{i}" if style == "TERSE" else
               f"First run `{tool} plan` to review the changes for svc{i}, then apply them with "
               f"`{tool} apply`, and check the state afterwards.")
        lines.append(json.dumps({"system": "You are an infrastructure assistant.",
                                 "instruction": f"Deploy service svc{i} with {tool}.",
                                 "input": f"env: staging-{i % 3}", "output": out,
                                 "style": style}, ensure_ascii=False))
    return lines


def _stage1(n: int = 30) -> list[str]:
    lines = []
    for i in range(n):
        style = "TERSE" if i % 2 else "VERBOSE"
        a = f"Answer {i}." if style == "TERSE" else f"Here is a longer answer number {i}, " \
            "with the reasoning spelled out step by step."
        lines.append(json.dumps({"messages": [
            {"role": "system", "content": f"<STYLE_{style}> You are a helpful assistant."},
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": a}]}, ensure_ascii=False))
    return lines


def write_jsonl(folder: Path = HERE) -> None:
    files = {"agent_logs.jsonl": _agent_logs(), "ko_general.jsonl": _chats("general", 30),
             "ko_code.jsonl": _chats("code", 30), "ko_reasoning.jsonl": _chats("reasoning", 30),
             "style_iac.jsonl": _style(), "style_stage1.jsonl": _stage1()}
    for name, lines in files.items():
        (Path(folder) / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_jsonl()
    write_sqlite(HERE / "app.sqlite")
    print(f"wrote {HERE}")
