"""End to end on a tiny model around Qwen3's real tokenizer: `data check`, `train` and `eval`
through the CLI on tool-calling, reasoning and Korean chats."""

from __future__ import annotations

import json

from .conftest import run_cli
from .test_chat_fidelity import KOREAN, REASONED
from .test_ollama_template import TOOLS, WEATHER

RECORDS = [{"messages": TOOLS + [{"role": "assistant", "content": "Jeju 12°C."}],
            "tools": [WEATHER]},
           {"messages": REASONED}, {"messages": KOREAN}]


def test_check_train_eval_with_tools_and_reasoning(tiny_real_qwen3, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS * 2),
                    encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: real-qwen3
model: {{path: {tiny_real_qwen3}, dtype: float32}}
adapter: {{rank: 4, alpha: 8}}
data: {{train: {data}, valid: {data}, max_seq_length: 512}}
train: {{backend: mlx, max_steps: 3, batch_size: 2, eval_every: 3, save_every: 3, log_every: 1}}
output: {{dir: {tmp_path / 'run'}}}
""")
    check = run_cli("data", "check", data, "--recipe", recipe, "--example", "2", check=True,
                    env={"COLUMNS": "200"})
    assert KOREAN[1]["content"] in check.stdout and "\ufffd" not in check.stdout
    assert "2 record(s) train reasoning (<think>) but enable_thinking is false" in check.stdout
    thinking = "data.chat_template_args={enable_thinking: true}"
    run_cli("train", recipe, "--no-dashboard", "--set", thinking, check=True)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["recipe"]["data"]["chat_template_args"] == {"enable_thinking": True}
    run_cli("eval", tmp_path / "run", "--split", "valid", "--adapter", "adapter", "--limit", "3",
            "--max-new-tokens", "4", check=True)
    report = json.loads((tmp_path / "run" / "eval-valid.json").read_text())
    assert [s["reference"] for s in report["samples"]] == [
        "Jeju 12°C.", "Yes.", KOREAN[3]["content"]]  # the answer, without its reasoning
