"""The README's commands, copied as a new user would copy them, work as printed.

- Every output block (a fenced block whose first line is `$ eden-mlx ...`) is run and must print
  what the README shows (compared with whitespace normalised: the terminal's width only moves
  line breaks).
- Every command of the README's bash blocks that needs no model download is run in a copy of the
  clone's layout (recipes/, data/, models/tiny-qwen2 built locally, runs/tiny-demo trained as
  `make demo` trains it). Training commands get `--set train.max_steps=N` appended to stay short.
- Every inline `eden-mlx plan ...` command without placeholders runs (exit 0 or 3, never 2).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from .conftest import EDEN, ROOT

README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.slow

# A command needs a download (or a program this box does not have) when it names one of these.
NEEDS_DOWNLOAD = ("Qwen/", "runs/qwen", "recipes/qwen", "/data/", "path/to/")
NOT_OURS = ("make ", "pip ", "ollama ", "mlx_lm.", "mlx.", "torchrun ")  # ours: eden-mlx only
TRAIN_STEPS = "train.max_steps=4"


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)


def shell_commands(body: str) -> list[str]:
    """A bash block's commands: continuations joined, comments and [optional] parts dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        line = re.sub(r"\s*\[[^\]]*\]", "", line)  # `[--dtype bf16|f16|f32]` is optional
        if line and not line.startswith("#"):
            out.append(line)
    return out


def runnable(command: str) -> bool:
    return not any(x in command for x in NEEDS_DOWNLOAD) and \
        not command.startswith(NOT_OURS)


def output_blocks() -> list[tuple[str, str]]:
    blocks = []
    for lang, body in fenced_blocks(README):
        first, _, rest = body.partition("\n")
        if not lang and first.startswith("$ eden-mlx "):
            blocks.append((first[2:], rest))
    return blocks


def words(text: str) -> str:
    return " ".join(text.split())


def run(command: str, cwd, timeout=900) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[0] == "eden-mlx", command
    env = {**os.environ, "COLUMNS": "100", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(EDEN + args[1:], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def test_the_readme_has_what_this_test_reads():
    assert len(output_blocks()) >= 2
    bash = [c for lang, b in fenced_blocks(README) if lang == "bash" for c in shell_commands(b)]
    assert sum(runnable(c) for c in bash) >= 6, bash


@pytest.mark.parametrize("command,shown", output_blocks(), ids=lambda x: x[:60])
def test_output_blocks_print_what_the_tool_prints(command, shown):
    proc = run(command, ROOT)
    assert proc.returncode in (0, 3), proc.stderr
    assert words(proc.stdout + proc.stderr) == words(shown), (
        f"README shows:\n{shown}\nthe tool prints:\n{proc.stdout}{proc.stderr}")


@pytest.fixture(scope="module")
def clone(tmp_path_factory, tiny_qwen2):
    """The clone's layout after `make demo`'s training step (the demo's own command)."""
    root = tmp_path_factory.mktemp("clone")
    for d in ("recipes", "data"):
        (root / d).symlink_to(ROOT / d)
    shutil.copytree(tiny_qwen2, root / "models" / "tiny-qwen2")
    make = (ROOT / "Makefile").read_text()
    train = re.search(r"\$\(EDEN\) (train recipes/tiny-demo.yaml [^\n]*)", make).group(1)
    train = train.replace("$(DEMO_RUN)", "runs/tiny-demo")
    proc = run(f"eden-mlx {train} --set {TRAIN_STEPS} --no-dashboard", root)
    assert proc.returncode == 0, proc.stderr
    assert "backend=mlx" in proc.stdout  # the demo shows the MLX backend, whatever is installed
    return root


def test_bash_blocks_run_as_printed(clone):
    ran = []
    for lang, body in fenced_blocks(README):
        if lang != "bash":
            continue
        for command in shell_commands(body):
            if not runnable(command):
                continue
            if "--verify" in command and "gguf" in command and not _has("llama_cpp"):
                continue  # the gguf extra is missing (skip_guard fails the run if installed)
            if "peft" in command and not _has("peft"):
                continue
            if " train " in f" {command} ":
                command += f" --set {TRAIN_STEPS} --no-dashboard"
            proc = run(command, clone)
            assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr
            assert "%|" not in proc.stderr, proc.stderr  # no tqdm bar (transformers' loading)
            ran.append(command)
    assert any(c.startswith("eden-mlx fuse") for c in ran), ran
    assert any(c.startswith("eden-mlx export ollama") for c in ran) or not _has("llama_cpp")


def test_inline_plan_commands_run(tmp_path):
    commands = set(re.findall(r"`(eden-mlx plan [^`]+)`", README))
    concrete = [c for c in commands if ".yaml" in c and
                not re.search(r"\b[A-Z]{2,}\b|\[|\.\.\.", c)]
    assert concrete
    for command in concrete:
        proc = run(command, ROOT)
        assert proc.returncode in (0, 3), f"{command}: {proc.stderr}"


# Plan figures the README quotes in prose (the output blocks above are checked whole): when
# this test was written, five of them were still the figures of planners several rounds old.
QUOTED_PLANS = [
    ("recipes/qwen2.5-7b-alpaca.yaml --device m1-16gb", "Plans: {} GiB (alpaca)"),
    ("recipes/qwen2.5-7b-classifier.yaml --device m1-16gb", "and {} GiB (classifier)"),
    ("recipes/qwen3-14b-stage1-style.yaml --device m2-32gb", "Plans: {} GiB (stage 1)"),
    ("recipes/qwen3-14b-stage2-iac.yaml --device m2-32gb", "and {} GiB (stage 2)"),
    ("recipes/qwen2.5-coder-7b-cpu.yaml --device epyc-256gb", "little): {} GiB on a 256 GB EPYC"),
    ("recipes/qwen2.5-32b-eden-m3max-dpo.yaml --device m3-max-36gb", "both recipes plan {} GiB of"),
    ("recipes/qwen2.5-32b-eden-m3max.yaml --device m3-max-36gb --set train.batch_size=4 --set "
     "train.grad_accumulation=8 --set train.grad_checkpoint=false --set train.loss_chunk=0 "
     "--set train.optimizer=adamw", "fp32 AdamW: a {} GiB plan"),
]


@pytest.mark.parametrize("args,phrase", QUOTED_PLANS, ids=[a.split()[0] for a, _ in QUOTED_PLANS])
def test_quoted_plan_figures_are_the_planners(args, phrase):
    """The README's prose quotes the plan's peak; it must be what `plan` prints today."""
    import json

    proc = run(f"eden-mlx plan {args} --json", ROOT)
    assert proc.returncode in (0, 3), proc.stderr
    gib = json.loads(proc.stdout)["predicted_peak_bytes"] / 2**30
    assert words(phrase.format(f"{gib:.2f}")) in words(README), (phrase, f"{gib:.2f}")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_make_knows_the_targets_the_readme_names():
    targets = {t for t in re.findall(r"`make ([\w-]+)", README) if not t.endswith("-")}
    targets |= {"demo", "test"}
    proc = subprocess.run(["make", "-n", "-C", str(ROOT), *sorted(targets),
                           "PY=" + sys.executable], capture_output=True, text=True)
    missing = re.findall(r"No rule to make target '([^']+)'", proc.stderr)
    assert not missing, missing
