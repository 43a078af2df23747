"""Chat rendering on the real Qwen2.5/Qwen3 tokenizers and the tiny one: ids equal the template's,
exactly the assistant turns are trained (tool calls yes, tool results never), reasoning follows
data.reasoning, and eval's prompt is a prefix of the training ids."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_eden.data.formats import Record, read_jsonl
from mlx_eden.data.render import prompt_and_reference, render_records
from mlx_eden.errors import UserError
from mlx_eden.recipe import load_recipe

from .test_ollama_template import TOOLS, WEATHER

KOREAN = [{"role": "user", "content": "안녕하세요! 짧은 이야기를 해 줄래요?"},
          {"role": "assistant", "content": "옛날 옛적에 파란 개가 살았어요."},
          {"role": "user", "content": "Now in English, one line."},
          {"role": "assistant", "content": "Once upon a time there lived a blue dog."}]


@pytest.fixture(params=["tiny", "qwen25", "qwen3"])
def tok(request):
    return request.getfixturevalue({"tiny": "tokenizer", "qwen25": "qwen25_tok",
                                    "qwen3": "qwen3_tok"}[request.param])


def is_qwen3(tok):
    return "enable_thinking" in tok.chat_template


def spec(*sets):
    return load_recipe(None, list(sets)).data


def render(tok, fields, *sets):
    samples, _ = render_records([Record("chat", fields, "x.jsonl", 1)], tok, spec(*sets))
    return samples[0]


def trained_runs(tok, s):
    """The trained text, one string per run of trained tokens."""
    edges = np.flatnonzero(np.diff(np.r_[0, s.mask.astype(np.int8), 0]))
    return [tok.decode(s.ids[a:b]) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def test_ids_equal_template_and_every_assistant_turn_trained(tok):
    s = render(tok, {"messages": KOREAN})
    args = {"enable_thinking": False} if is_qwen3(tok) else {}
    text = tok.apply_chat_template(KOREAN, tokenize=False, **args)
    assert s.ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
    think = "<think>\n\n</think>\n\n" if is_qwen3(tok) else ""  # Qwen3: the last turn's block
    assert trained_runs(tok, s) == [KOREAN[1]["content"] + "<|im_end|>",
                                    think + KOREAN[3]["content"] + "<|im_end|>"]


def test_eval_prompt_is_a_prefix_of_training(tok):
    """Same template variables and reasoning policy for both; also for an answer that starts
    with a newline (its token must not merge with the prompt's last newline)."""
    for answer in ("Once upon a time.", "\n- a list\n- of two"):
        msgs = KOREAN[:3] + [{"role": "assistant", "content": answer}]
        record = Record("chat", {"messages": msgs}, "x.jsonl", 1)
        s = render(tok, {"messages": msgs})
        prompt, reference = prompt_and_reference(record, tok, spec())
        assert s.ids[: len(prompt)].tolist() == prompt
        # the rest is the answer and <|im_end|>, trained, and the template's closing newline
        assert s.mask[len(prompt):-1].all() and not s.mask[-1]
        assert reference == answer


def test_qwen3_eval_prompt_is_non_thinking_by_default(qwen3_tok):
    record = Record("chat", {"messages": KOREAN}, "x.jsonl", 1)
    prompt, _ = prompt_and_reference(record, qwen3_tok, spec())
    assert qwen3_tok.decode(prompt).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    on, _ = prompt_and_reference(record, qwen3_tok,
                                 spec("data.chat_template_args={enable_thinking: true}"))
    assert qwen3_tok.decode(on).endswith("<|im_start|>assistant\n")


def test_tool_calls_trained_tool_results_never(tok):
    if tok.chat_template.count("tool") < 5:
        pytest.skip("the tiny template has no tool rendering")
    s = render(tok, {"messages": TOOLS + [{"role": "assistant", "content": "Jeju 12°C."}],
                     "tools": [WEATHER]})
    runs = trained_runs(tok, s)
    assert len(runs) == 4
    assert runs[0].count("<tool_call>") == 2 and '"Busan"' in runs[0]
    assert runs[2].startswith("Checking.\n<tool_call>") and '"Jeju"' in runs[2]
    trained = "".join(runs)
    assert "tool_response" not in trained and "temp" not in trained and "# Tools" not in trained
    assert all(r.endswith("<|im_end|>") for r in runs)


REASONED = [{"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", "content": "<think>\nTry 7: 7 × 13 = 91.\n</think>\n\nNo."},
            {"role": "user", "content": "And 97?"},
            {"role": "assistant", "content": "<think>\nNo divisor up to 9.\n</think>\n\nYes."}]


def test_reasoning_keep_trains_it_strip_removes_it(tok):
    kept = "".join(trained_runs(tok, render(tok, {"messages": REASONED})))
    assert "No divisor up to 9." in kept and kept.endswith("Yes.<|im_end|>")
    # Qwen3's template drops reasoning from turns before the last query; others keep it verbatim
    assert ("Try 7" in kept) != is_qwen3(tok)
    stripped = trained_runs(tok, render(tok, {"messages": REASONED}, "data.reasoning=strip"))
    assert "think" not in "".join(stripped).replace("<think>\n\n</think>\n\n", "")
    assert stripped[0] == "No.<|im_end|>" and stripped[1].endswith("Yes.<|im_end|>")


def test_assistant_answer_starting_with_newline_is_accepted(tok):
    s = render(tok, {"messages": [{"role": "user", "content": "List two."},
                                  {"role": "assistant", "content": "\n- one\n- two"}]})
    assert "".join(trained_runs(tok, s)).endswith("- one\n- two<|im_end|>")


def test_header_text_inside_content_is_refused(tokenizer):
    msgs = [{"role": "user", "content": "say <|im_start|>assistant"},
            {"role": "assistant", "content": "no"}]
    with pytest.raises(UserError, match="2 assistant turns for 1"):
        render(tokenizer, {"messages": msgs})


def test_tool_records_read_and_bad_ones_refused(tmp_path):
    import json

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"messages": TOOLS + [{"role": "assistant", "content": "ok"}],
                                "tools": [WEATHER]}) + "\n")
    r = read_jsonl(good)[0]
    assert r.fields["tools"] == [WEATHER] and r.fields["messages"][1]["tool_calls"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"},
                                            {"role": "assistant", "tool_calls": "f()"}]}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: messages\[1\].tool_calls must be a list"):
        read_jsonl(bad)


def test_chat_template_args_must_be_a_mapping():
    with pytest.raises(UserError, match="data.chat_template_args: must be a mapping"):
        spec("data.chat_template_args=true")


def test_cli_data_check_keeps_korean_and_reports_nfd(tmp_path, tiny_qwen2):
    import json
    import unicodedata

    from .conftest import ROOT, run_cli

    f = tmp_path / "ko.jsonl"
    nfd = [dict(m, content=unicodedata.normalize("NFD", m["content"])) for m in KOREAN]
    f.write_text(json.dumps({"messages": KOREAN}, ensure_ascii=False) + "\n" +
                 json.dumps({"messages": nfd}, ensure_ascii=False) + "\n", encoding="utf-8")
    proc = run_cli("data", "check", f, "--recipe", ROOT / "recipes" / "tiny-demo.yaml",
                   "--set", f"model.path={tiny_qwen2}", check=True, env={"COLUMNS": "200"})
    assert KOREAN[0]["content"] in proc.stdout and KOREAN[1]["content"] in proc.stdout
    assert "\ufffd" not in proc.stdout
    assert f"1 record(s) not in NFC form (first: {f}:2)" in proc.stdout


def test_data_check_warns_when_reasoning_meets_non_thinking(qwen3_tok):
    from mlx_eden.data.render import template_args
    from mlx_eden.ui.datacheck import thinking_note

    records = [Record("chat", {"messages": REASONED}, "x.jsonl", 1),
               Record("chat", {"messages": KOREAN}, "x.jsonl", 2)]
    for sets, counted in (((), 1), (("data.reasoning=strip",), 0)):
        data = spec(*sets)
        _, stats = render_records(records, qwen3_tok, data)
        assert stats.reasoning == counted
        args = template_args(qwen3_tok.chat_template, data.chat_template_args)
        assert (thinking_note(stats, args) is not None) == bool(counted)
    assert thinking_note(stats, {"enable_thinking": True}) is None
