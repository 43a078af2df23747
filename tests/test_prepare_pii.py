"""PII detection: every kind found and replaced, none left in the output, and the usual false
positives (dates, times, version numbers, amounts, order numbers) left alone."""

from __future__ import annotations

import pytest

from mlx_eden.data.prepare.pii import PATTERNS, PiiScrubber, luhn_ok

from .prepare_helpers import chat, funnel, ko_answer, prepare, read_out, write_jsonl

ALL = ["email", "phone", "rrn", "card", "ip", "url"]
HITS = [
    ("메일은 kim.minsu+tag@example.co.kr 입니다", "email"),
    ("연락처 010-1234-5678입니다", "phone"),
    ("휴대폰 01098765432", "phone"),
    ("사무실 02-123-4567", "phone"),
    ("지점 031 987 6543", "phone"),
    ("call +82 10-1234-5678 now", "phone"),
    ("US office +1 415 555 0100", "phone"),
    ("주민등록번호 900101-1234567", "rrn"),
    ("카드 4111 1111 1111 1111 로 결제", "card"),
    ("card 5500-0000-0000-0004", "card"),
    ("서버 192.168.0.12 에 접속", "ip"),
    ("see https://example.com/a?b=1 for details", "url"),
]
LEFT_ALONE = [
    "회의는 2024-03-15 오후 10:30에 시작합니다",
    "날짜 2024.03.15 와 2024/03/15",
    "Python 3.11.4 와 버전 v2.10.1 을 쓰세요",
    "가격은 1,000,000원 입니다",
    "주문번호 20240315001 확인",
    "card-like but not Luhn: 4111 1111 1111 1112",
    "not a resident number: 901301-1234567",  # month 13
    "pi is 3.14159 and e is 2.71828",
    "ISBN 978-3-16-148410-0",
    "IP-like version 1.2.3.456",
]


@pytest.mark.parametrize("text,kind", HITS, ids=[k + str(i) for i, (_, k) in enumerate(HITS)])
def test_each_kind_is_found_and_replaced(text, kind):
    out, hits = PiiScrubber(ALL).scrub(text)
    assert dict(hits) == {kind: 1}, out
    assert f"<{kind.upper()}>" in out


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_false_positives_left_alone(text):
    out, hits = PiiScrubber(ALL).scrub(text)
    assert out == text and not hits


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_urls_only_when_asked():
    out, hits = PiiScrubber(["email", "phone"]).scrub("see https://example.com")
    assert out == "see https://example.com" and not hits


def test_no_pattern_left_in_the_output_and_counts_per_kind(tmp_path):
    recs = [chat(f"질문 {i} {text}", f"{ko_answer(i)} {text}") for i, (text, _) in
            enumerate(HITS)] + [chat(f"질문 x{i}", f"{ko_answer(50 + i)} {t}")
                               for i, t in enumerate(LEFT_ALONE)]
    src = write_jsonl(tmp_path / "raw.jsonl", recs)
    tree = {"sources": [{"name": "s", "path": str(src)}],
            "filters": {"pii": {"action": "redact", "kinds": ALL}},
            "split": {"fractions": [1.0, 0.0]}}
    res, out = prepare(tmp_path, tree)
    text = (out / "train.jsonl").read_text(encoding="utf-8")
    assert len(read_out(out, "train.jsonl")) == len(recs)
    scrub = PiiScrubber(ALL)
    assert not scrub.scrub(text)[1], "a pattern survived redaction"
    for t in LEFT_ALONE:
        assert t in text
    expected = {}
    for _, kind in HITS:
        expected[kind] = expected.get(kind, 0) + 2  # in the user turn and in the answer
    assert res.metadata["sources"][0]["pii_redacted"] == dict(sorted(expected.items()))
    # drop mode: the conversations with PII are rejected, without their text
    tree["filters"]["pii"]["action"] = "drop"
    res, out = prepare(tmp_path, tree, out="dropped")
    assert funnel(res.metadata, "s") == {"pii": len(HITS)}
    rejected = read_out(out, "rejected.jsonl")
    assert all("messages" not in r for r in rejected)
    assert not any(p.search((out / "rejected.jsonl").read_text()) for p in PATTERNS.values()
                   if p is not PATTERNS["card"])
