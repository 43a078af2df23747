import json
import re

import numpy as np
import pytest

from mlx_eden.data.batching import BatchPlan, collate, plan_packed
from mlx_eden.data.formats import Record, read_jsonl
from mlx_eden.data.render import Sample, render_records
from mlx_eden.errors import UserError
from mlx_eden.recipe import load_recipe

from .conftest import ROOT, SAMPLES, run_cli


def spec(**kw):
    return load_recipe(None, [f"data.{k}={v}" for k, v in kw.items()]).data


def render_one(tok, fmt, fields, **kw):
    samples, _ = render_records([Record(fmt, fields, "x.jsonl", 1)], tok, spec(**kw))
    return samples[0]


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_chat_masks_every_assistant_turn_and_its_end_token(tokenizer):
    tok = tokenizer
    msgs = [{"role": "user", "content": "What is 2 plus 3?"},
            {"role": "assistant", "content": "2 plus 3 is 5."},
            {"role": "user", "content": "And 4 plus 4?"},
            {"role": "assistant", "content": "4 plus 4 is 8."}]
    s = render_one(tok, "chat", {"messages": msgs})
    assert s.ids.tolist() == ids(tok, tok.apply_chat_template(msgs, tokenize=False))
    # Exact positions: each assistant turn starts right after the generation prompt that
    # precedes it and covers its content plus <|im_end|>.
    expected = np.zeros(len(s.ids), bool)
    for turn in (1, 3):
        start = len(ids(tok, tok.apply_chat_template(msgs[:turn], tokenize=False,
                                                     add_generation_prompt=True)))
        n = len(ids(tok, msgs[turn]["content"])) + 1  # + <|im_end|>
        expected[start : start + n] = True
    assert s.mask.tolist() == expected.tolist()
    trained = [tok.decode(s.ids[i : i + 1]) for i in np.flatnonzero(s.mask)]
    assert "".join(trained) == "2 plus 3 is 5.<|im_end|>4 plus 4 is 8.<|im_end|>"


def test_mask_prompt_off_trains_everything(tokenizer):
    s = render_one(tokenizer, "chat", {"messages": [{"role": "user", "content": "Hi"},
                                                    {"role": "assistant", "content": "Yo"}]},
                   mask_prompt="false")
    assert s.mask.all()


def test_alpaca_classic_template_trains_response_and_eos(tokenizer):
    f = {"instruction": "Uppercase it.", "input": "cat", "output": "CAT"}
    s = render_one(tokenizer, "alpaca", f, template="alpaca")
    text = tokenizer.decode(s.ids)
    assert text.startswith("Below is an instruction that describes a task, paired with an input")
    assert text.endswith("### Response:\nCAT" + tokenizer.eos_token)
    assert tokenizer.decode(s.ids[s.mask]) == "CAT" + tokenizer.eos_token


def test_alpaca_through_chat_template(tokenizer):
    f = {"instruction": "Uppercase it.", "input": "cat", "output": "CAT"}
    s = render_one(tokenizer, "alpaca", f)
    assert "<|im_start|>user\nUppercase it.\n\ncat<|im_end|>" in tokenizer.decode(s.ids)
    assert tokenizer.decode(s.ids[s.mask]) == "CAT<|im_end|>"


def test_completions_and_text(tokenizer):
    s = render_one(tokenizer, "completions", {"prompt": "2+2=", "completion": "4"}, template="none")
    assert tokenizer.decode(s.ids) == "2+2=4" + tokenizer.eos_token
    assert tokenizer.decode(s.ids[s.mask]) == "4" + tokenizer.eos_token
    t = render_one(tokenizer, "text", {"text": "plain words"})
    assert t.mask.all() and tokenizer.decode(t.ids) == "plain words" + tokenizer.eos_token


def test_truncate_and_drop_are_counted(tokenizer):
    long = {"messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "word " * 100}]}
    recs = [Record("chat", long, "x.jsonl", 1)]
    samples, stats = render_records(recs, tokenizer, spec(max_seq_length=64))
    assert stats.truncated == 1 and len(samples[0].ids) == 64
    samples, stats = render_records(recs, tokenizer, spec(max_seq_length=64, truncation="drop"))
    assert stats.dropped == 1 and samples == []


@pytest.mark.parametrize("content,message", [
    ('{"messages": [{"role": "user", "content": "hi"}', "not valid JSON"),
    ('{"messages": [{"role": "bot", "content": "hi"}]}', "messages[0] has unknown role 'bot'"),
    ('{"messages": [{"role": "user"}]}', "messages[0] needs role and content"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "conversation has no assistant turn"),
    ('{"question": "hi"}', "chat record is missing messages"),
    ('[1, 2]', "line is not a JSON object"),
])
def test_malformed_lines_name_file_and_line(tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "a"},
                                    {"role": "assistant", "content": "b"}]})
    f.write_text(good + "\n" + content + "\n")
    with pytest.raises(UserError) as e:
        read_jsonl(f)
    assert str(e.value).startswith(f"{f}:2: {message}")


def test_unknown_format_is_explained(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"question": "hi", "answer": "yo"}\n')
    with pytest.raises(UserError) as e:
        read_jsonl(f)
    assert str(e.value).startswith(f"{f}:1: cannot tell the format from keys ['answer', 'question']")
    assert "set data.format" in str(e.value)


def test_mixed_formats_and_empty_file(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text('{"text": "a"}\n{"prompt": "p", "completion": "c"}\n')
    with pytest.raises(UserError, match=r"mixed.jsonl:2: text record is missing text"):
        read_jsonl(f)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="file is empty"):
        read_jsonl(empty)


def test_cli_bad_data_is_one_line_exit_2(tmp_path, tiny_qwen2):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}\n')
    proc = run_cli("data", "check", f, "--recipe", ROOT / "recipes" / "tiny-demo.yaml",
                   "--set", f"model.path={tiny_qwen2}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {f}:1: messages[1] needs role and content "
                                   '(e.g. {"role": "user", "content": "Hi"})')


def test_cli_data_check_reports(tiny_qwen2):
    proc = run_cli("data", "check", SAMPLES / "chat" / "valid.jsonl", "--recipe",
                   ROOT / "recipes" / "tiny-demo.yaml", "--set", f"model.path={tiny_qwen2}",
                   check=True)
    assert "records" in proc.stdout and "48" in proc.stdout
    assert "tokens min/p50/p90/p99/max" in proc.stdout
    assert "<|im_start|>assistant" in proc.stdout
    # stdout is a pipe: colour would be lost, so trained spans are marked in the text itself,
    # and only assistant turns are marked (the prompt is not trained).
    flat = " ".join(proc.stdout.split())  # rich wraps at 80 columns in a pipe
    assert "⟦...⟧ = trained tokens" in flat and "green = trained" not in flat
    example = flat.split("= trained tokens:", 1)[1]
    spans = re.findall(r"⟦(.*?)⟧", example, re.S)
    assert spans and example.count("⟦") == example.count("⟧") == len(spans)
    assert not any("<|im_start|>user" in span for span in spans)
    assert "<|im_start|>user" in re.sub(r"⟦.*?⟧", "", example, flags=re.S)


def _sample(n, trained_from=1):
    ids = np.arange(10, 10 + n, dtype=np.int32)
    mask = np.zeros(n, bool)
    mask[trained_from:] = True
    return Sample(ids, mask)


def test_buckets_sort_by_true_length_and_pad_to_8():
    samples = [_sample(n) for n in (30, 5, 17, 6, 29, 18)]
    plan = BatchPlan(samples, batch_size=2, row_len=64, pad_id=0)
    widths = [plan.batch(i).shape[1] for i in range(len(plan))]
    assert widths == [8, 24, 32]  # (5,6)->5 positions, (17,18)->17, (29,30)->29, padded to 8
    b = plan.batch(0)
    assert b.inputs[0, :4].tolist() == [10, 11, 12, 13] and b.targets[0, :4].tolist() == [11, 12, 13, 14]
    assert b.segments[0].tolist() == [1] * 4 + [0] * 4
    assert b.mask[0].tolist() == [1.0] * 4 + [0.0] * 4


def test_epoch_order_is_seeded_and_resumable():
    samples = [_sample(n) for n in range(5, 45)]
    plan = BatchPlan(samples, 4, 64, 0, seed=3)
    again = BatchPlan(samples, 4, 64, 0, seed=3)
    assert plan.epoch_order(0).tolist() == again.epoch_order(0).tolist()
    assert plan.epoch_order(0).tolist() != plan.epoch_order(1).tolist()
    epoch, b = plan.at(len(plan) + 2)
    assert epoch == 1
    assert np.array_equal(b.inputs, plan.batch(int(plan.epoch_order(1)[2])).inputs)


def test_packing_segments_and_masks():
    samples = [_sample(n, trained_from=2) for n in (9, 5, 4, 7)]
    batches, widths = plan_packed(samples, batch_size=4)
    assert len(batches) == 1 and widths == [8]  # rows as wide as the longest sample (8 positions)
    rows = batches[0]
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3]
    assert all(sum(len(samples[i].ids) - 1 for i in r) <= 8 for r in rows)
    b = collate(samples, rows, pad_id=0, packed=True, width=widths[0])
    for r, row in enumerate(rows):
        at = 0
        for seg, i in enumerate(row, 1):
            n = len(samples[i].ids) - 1
            assert b.segments[r, at : at + n].tolist() == [seg] * n
            assert b.mask[r, at : at + n].tolist() == samples[i].mask[1:].astype(float).tolist()
            at += n
    assert b.trained_tokens == sum(s.trained for s in samples)
