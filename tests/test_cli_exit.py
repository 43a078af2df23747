"""cli.main as the process entry point ends with os._exit after the atexit handlers and a flush
(cli.quick_exit): the interpreter's teardown is skipped, the exit code, the output and the atexit
handlers stay; EDEN_DEBUG=1 and a running profiler keep the ordinary exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A canary whose finalizer runs only in the interpreter's teardown (module globals freed) and an
# atexit handler; both write straight to fd 1, the way nothing can lose them.
PROBE = r"""
import atexit, os, sys
import mlx_eden.cli as cli

class Canary:
    def __del__(self):
        os.write(1, b"TEARDOWN\n")

cli.canary = Canary()
atexit.register(lambda: os.write(1, b"ATEXIT\n"))
if sys.argv[1] == "open-file":
    log = open(sys.argv[2], "w")  # left open: its buffered line is written by the teardown
    log.write("kept\n")
    sys.argv.pop(2)
if sys.argv[1] == "profiled":
    import cProfile
    cProfile.Profile().enable()
sys.argv = ["eden-mlx", *sys.argv[2:]]
print("buffered", end="")  # in stdout's buffer when the command ends: flushed by quick_exit
cli.main()
"""


def _run(mode: str, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDEN_DEBUG": "1" if debug else "0"}
    return subprocess.run([sys.executable, "-c", PROBE, mode, *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize("args,code", [(["recipe", "keys"], 0),
                                       (["train", "no-such-recipe.yaml"], 2)])
def test_quick_exit_keeps_code_output_and_atexit(args, code):
    quick = _run("plain", *args)
    assert quick.returncode == code
    assert "buffered" in quick.stdout and "ATEXIT" in quick.stdout
    assert "TEARDOWN" not in quick.stdout  # the teardown was skipped
    if code == 2:
        assert quick.stderr.startswith("error: ") and "no-such-recipe.yaml" in quick.stderr
    else:
        assert "learning_rate" in quick.stdout


def test_debug_and_profiler_keep_the_ordinary_exit():
    for out in (_run("plain", "recipe", "keys", debug=True), _run("profiled", "recipe", "keys")):
        assert out.returncode == 0
        assert "ATEXIT" in out.stdout and "TEARDOWN" in out.stdout


def test_a_file_left_open_for_writing_keeps_the_ordinary_exit(tmp_path):
    log = tmp_path / "log.txt"
    out = _run("open-file", str(log), "recipe", "keys")
    assert out.returncode == 0 and "TEARDOWN" in out.stdout
    assert log.read_text() == "kept\n"  # with os._exit the buffered line would be lost
