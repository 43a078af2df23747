"""The `eden-mlx` command. Subcommands live in `commands/` and are imported only when run, so
`eden-mlx --help` is instant. A `UserError` from any of them becomes one line and exit code 2; any
other failure (a full disk, a read-only folder, a library error) one line and exit code 1, with
the traceback only when EDEN_DEBUG=1."""

from __future__ import annotations

import atexit
import errno
import fcntl
import importlib
import os
import stat
import sys
import threading
import traceback

import click

from .errors import PeerLost, UserError

# name -> (module under mlx_eden.commands, attribute, one-line help)
COMMANDS = {
    "train": ("train", "train", "Fine-tune a model per a recipe."),
    "recipe": ("recipe", "recipe", "Show or check recipes."),
    "data": ("data", "data", "Inspect training data as a recipe would tokenize it."),
    "eval": ("eval", "eval_", "Evaluation suites and ship gates (exit 4 if a gate fails)."),
    "tiny": ("tiny", "tiny", "Build a tiny Qwen2/Qwen3 model locally (tests, demo)."),
    "fuse": ("fuse", "fuse", "Merge an adapter into the base: a Hugging Face-layout folder."),
    "export": ("export", "export", "Export to GGUF, a llama.cpp LoRA, PEFT or an Ollama Modelfile."),
    "import": ("importers", "import_", "Import adapters from other formats (PEFT)."),
    "report": ("report", "report", "Write an HTML report of one run or several, compared."),
    "doctor": ("doctor", "doctor", "Show the device, BLAS and measured matmul rate."),
    "plan": ("plan", "plan", "Will a recipe fit in memory? Predicted peak per component."),
    "profile": ("profile", "profile", "Measure a recipe's memory on a few steps; vs the plan."),
    "chat": ("chat", "chat", "Chat with a run's adapter or a model in the terminal (streaming)."),
    "serve": ("serve", "serve", "An OpenAI-compatible HTTP API (mlx-lm's server) for a run."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"mlx_eden.commands.{module}"), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlx-eden")
def cli():
    """mlx-eden: LoRA/QLoRA fine-tuning for Qwen-family models on MLX."""


def main(argv=None) -> None:
    """Run one command; as the process's entry point (no argv), exit without the interpreter's
    teardown when that is safe (see quick_exit)."""
    try:
        _dispatch(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    if argv is None and isinstance(code, int | None) and teardown_skippable():
        quick_exit(code or 0)
    sys.exit(code)


def _dispatch(argv) -> None:
    # transformers prints an advisory when torch is absent (the mlx backend needs no torch).
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        cli.main(args=argv, prog_name="eden-mlx", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # a fault, not bad input: one line unless debugging
        if os.environ.get("EDEN_DEBUG") == "1":
            traceback.print_exc()
        click.echo(f"error: {fault_line(e)}", err=True)
        sys.exit(1)


def teardown_skippable() -> bool:
    """No profiler or tracer waiting for the interpreter's end (cProfile writes after the
    module returns), no other thread that a normal exit would wait for, no file still open for
    writing (its Python buffer is flushed only by the teardown), not debugging."""
    return (sys.getprofile() is None and sys.gettrace() is None
            and os.environ.get("EDEN_DEBUG") != "1"
            and all(t.daemon or t is threading.main_thread() for t in threading.enumerate())
            and not files_open_for_writing())


def files_open_for_writing() -> bool:
    """Whether this process holds a regular file open for writing (fds above stderr). Why: a
    file object left open (a logger's handler, a writer nobody closed) may hold bytes in its
    buffer that only its finalizer writes; os._exit would lose them. Unknown: assume so."""
    fds = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return True
    for name in names:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            st, flags = os.fstat(fd), fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:  # the listing's own fd, already closed
            continue
        if stat.S_ISREG(st.st_mode) and flags & os.O_ACCMODE != os.O_RDONLY:
            return True
    return False


def quick_exit(code: int) -> None:
    """atexit handlers, flushed stdout/stderr, then os._exit: the interpreter's own teardown
    (freeing ~750 modules and their objects; transformers' import alone leaves 0.1 s of it) is
    skipped. Why: after a tiny-model `train` run had written run.json and closed its files, the
    process took 0.20 s more to end, 0.05 s with this (minima of 7 runs each, alternated, busy
    2 cores; 0.10-0.15 s saved on a quieter box)."""
    atexit._run_exitfuncs()  # what a normal exit runs first: loggers, temp folders, wrappers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or not a file: nothing to write
            pass
    os._exit(code)


FS_HINTS = {
    errno.ENOSPC: "the disk is full: free space, then rerun (a training run: --resume)",
    errno.EDQUOT: "the disk quota is exceeded: free space, then rerun",
    errno.EROFS: "the file system is read-only: pass an --output on a writable disk",
    errno.EACCES: "permission denied: pass an --output you can write to",
    errno.EPERM: "permission denied: pass an --output you can write to",
    errno.EISDIR: "a folder is where a file is expected: pass a file path",
    errno.ENOTDIR: "a file is where a folder is expected: pass a folder path",
    errno.EEXIST: "it already exists: pass a new path",
}


def fault_line(e: Exception) -> str:
    """One line for an unexpected failure: where, what, what to do."""
    if isinstance(e, OSError) and e.errno in FS_HINTS:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{FS_HINTS[e.errno]}"
    if isinstance(e, PeerLost):
        return str(e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return (f"{type(e).__name__}: {text[:300]} (set EDEN_DEBUG=1 for the traceback and report "
            "it if the input looks right)")


if __name__ == "__main__":
    main()
