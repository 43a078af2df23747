"""The real `eden-mlx train` in a pseudo-terminal of 80x24: the dashboard draws, a Ctrl-C typed at
the terminal stops the run with a checkpoint, the final screen shows the panels, the terminal is
restored, and the run resumes (through a pipe, so with plain log lines) and is reported."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from .conftest import ROOT, run_cli
from .test_report import check_self_contained

pytestmark = pytest.mark.slow

SHOW_CURSOR, HIDE_CURSOR = b"\x1b[?25h", b"\x1b[?25l"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
# Rich's Live moves back to the top of its frame with "cursor up, erase line" pairs
REDRAW = b"\x1b[1A\x1b[2K"


def run_in_terminal(args: list[str], metrics: Path, interrupt_after_steps: int,
                    timeout: float = 400) -> tuple[int, bytes]:
    """Run `eden-mlx ARGS` with a pty of 80x24 as its controlling terminal; type Ctrl-C once
    metrics.jsonl has that many train lines. Returns (exit code, everything it wrote)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "mlx_eden.cli", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    out, typed, deadline = bytearray(), False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if not typed and metrics.exists() and \
                metrics.read_text().count('"event": "train"') >= interrupt_after_steps:
            os.write(fd, b"\x03")  # Ctrl-C, delivered as SIGINT by the terminal driver
            typed = True
    else:
        os.kill(pid, 9)
        pytest.fail(f"eden-mlx did not finish in {timeout}s:\n{ANSI.sub(b'', out)[-2000:]}")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), bytes(out)


def final_screen(raw: bytes) -> list[str]:
    """The last frame drawn: what follows the last redraw's cursor movement, as plain text."""
    tail = raw[raw.rfind(REDRAW) + len(REDRAW):]
    text = ANSI.sub(b"", tail).decode("utf-8", "replace").replace("\r", "")
    return [line for line in text.split("\n") if line.strip()]


@pytest.fixture(scope="module")
def interrupted_run(tiny_qwen2, tmp_path_factory):
    run = tmp_path_factory.mktemp("dash") / "run"
    args = ["train", "recipes/tiny-demo.yaml", "--backend", "mlx", "--output", str(run),
            "--set", f"model.path={tiny_qwen2}", "--set", "data.max_seq_length=128",
            "--set", "train.batch_size=2", "--set", "train.max_steps=16",
            "--set", "train.eval_every=8", "--set", "train.eval_batches=2",
            "--set", "train.save_every=0"]
    code, raw = run_in_terminal(args, run / "metrics.jsonl", interrupt_after_steps=3)
    return run, args, code, raw


def test_dashboard_draws_in_a_terminal_and_ctrl_c_restores_it(interrupted_run):
    run, _, code, raw = interrupted_run
    assert code == 130, ANSI.sub(b"", raw)[-3000:].decode(errors="replace")
    assert raw.count(HIDE_CURSOR) == 1 and raw.rstrip().endswith(SHOW_CURSOR)
    assert raw.count(REDRAW) > 0  # it redrew in place rather than scrolling
    screen = final_screen(raw)
    text = "\n".join(screen)
    assert len(screen) <= 24 and max(len(line) for line in screen) <= 80, text
    for title in ("mlx-eden · tiny-demo · interrupted", "progress", "memory", "loss", "events"):
        assert title in text, text
    stopped_at = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert f"{stopped_at}/16" in text and f"opt steps {stopped_at}" in text
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if '"train"' in line][-1]
    assert f"loss {last['loss']:.4f}" in text and "grad norm" in text and "val ▕" in text
    # the memory plan `train` makes before loading gives the panel its budget and prediction
    assert "peak    " in text and "% of plan" in text and "budget " in text
    assert "stopped by Ctrl-C" in text and f"checkpoint step {stopped_at}" in text
    # the run is resumable: the loop wrote a complete checkpoint and said so
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert (run / "checkpoints" / f"step-{stopped_at:07d}" / "trainer_state.json").is_file()


def test_interrupted_run_resumes_with_plain_lines_and_is_reported(interrupted_run):
    run, args, _, _ = interrupted_run
    proc = run_cli(*args, "--resume", check=True)  # stdout is a pipe: plain lines
    assert "\x1b[" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert re.match(r"start recipe=tiny-demo .* from_step=[1-9]", lines[0]), lines[0]
    assert any(line.startswith("eval step=") for line in lines)
    assert lines[-2] == "stop step=16 status=completed reason='finished 16 steps'"
    assert lines[-1].startswith("phases startup=")  # where the wall time went

    out = run.parent / "report" / "index.html"
    proc = run_cli("report", run, "--output", out, check=True)
    assert "run summary" in proc.stdout and "completed" in proc.stdout and "16/16" in proc.stdout
    page = out.read_text()
    check_self_contained(page)
    info = json.loads((run / "run.json").read_text())
    for file, digest in info["data"].items():
        assert file in page and digest in page
    assert info["versions"]["mlx"] in page and "max_seq_length: 128" in page
    assert "stopped by Ctrl-C" not in page and "finished 16 steps" in page
    assert not list(out.parent.glob(".*tmp*"))  # written to a temp name, then renamed
