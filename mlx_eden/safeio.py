"""Safe file I/O in one place: every write a reader (or a kill) may see half done, and reads of
JSON files that may be damaged.

- `write_json_atomic`, `atomic_file`, `atomic_dir`, `publish_dir`: write to a temporary name next
  to the target and rename into place, so a kill leaves the previous complete version or the new
  complete one, never a partial file that looks complete.
- Replacing a directory takes two renames (old -> `.NAME.old`, new -> NAME). A kill between them
  leaves only `.NAME.old`: `published` lets readers fall back to it and `repair_published` (run
  on resume) puts it back.
- `check_target`: the one rule for commands that write a folder or file given by the user: never
  into the input, never over something that is not this command's own previous output unless
  `--overwrite` is given (a folder it wrote carries a `.eden-output` marker; a file, a signature).

Test hook: `EDEN_FAULT=between-renames:NAME` SIGKILLs the process between the two renames that
replace NAME (tests/test_faults_runs.py uses it; nothing else reads it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import DamagedFile, UserError


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, read 1 MiB at a time (run.json's data hashes, prepare metadata)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

MARKER = ".eden-output"  # in a folder a command wrote: the command's name


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as JSON at `path` through a temporary file (fsynced, then renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def old_copy(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place, replacing any previous one."""
    for p in tmp.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    if final.exists():
        old = old_copy(final)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        if os.environ.get("EDEN_FAULT") == f"between-renames:{final.name}":
            os.kill(os.getpid(), signal.SIGKILL)  # test hook (module docstring)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


def published(final: str | Path) -> Path:
    """The directory a reader should use: `final`, or the previous complete copy when a kill
    came between the two renames of `publish_dir`."""
    final = Path(final)
    old = old_copy(final)
    return old if not final.exists() and old.is_dir() else final


def repair_published(final: Path) -> bool:
    """Undo a publish cut between its renames (keeps the previous copy); True if repaired."""
    old = old_copy(final)
    if not final.exists() and old.is_dir():
        os.replace(old, final)
        return True
    return False


def _inside(a: Path, b: Path) -> bool:
    """Whether a is b or inside b (resolved, so symlinks and `..` cannot hide it)."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def check_target(target: str | Path, *, command: str, overwrite: bool, inputs=(),
                 is_dir: bool = True, own: Callable[[Path], bool] | None = None) -> None:
    """Refuse to write `target` when that would destroy data the command did not create."""
    target = Path(target)
    if is_dir and target.exists() and not target.is_dir():
        raise UserError("the output is a file, a folder is expected", file=str(target),
                        hint="pass a folder path to --output")
    if not is_dir and target.is_dir():
        raise UserError("the output is a folder, a file is expected", file=str(target),
                        hint="pass a file path, e.g. --output model.gguf")
    for inp in inputs:  # replacing the target must not remove or change any input
        if inp is not None and Path(inp).exists() and (
                (target.exists() and _inside(target, Path(inp))) or _inside(Path(inp), target)):
            raise UserError(f"the output would overwrite the input {inp}", file=str(target),
                            hint="pass a different --output")
    if not target.exists():
        return
    if overwrite:
        return
    if is_dir:
        entries = list(target.iterdir())
        mine = (target / MARKER).is_file() and (target / MARKER).read_text().strip() == command
        if entries and not mine:
            raise UserError("the output folder is not empty and was not written by "
                            f"`eden-mlx {command}`", file=str(target),
                            hint="pass an empty or new folder, or add --overwrite to replace it")
    elif target.stat().st_size and not (own and own(target)):
        raise UserError(f"the output file exists and was not written by `eden-mlx {command}`",
                        file=str(target), hint="pass a new file name, or add --overwrite")


def has_signature(marker: bytes, head: int = 1 << 16) -> Callable[[Path], bool]:
    """An `own` test for check_target: the file's first `head` bytes contain `marker`."""
    def own(path: Path) -> bool:
        with open(path, "rb") as f:
            return marker in f.read(head)
    return own


@contextlib.contextmanager
def atomic_dir(final: str | Path, command: str | None = None) -> Iterator[Path]:
    """A temporary directory next to `final`, renamed into place only if the block succeeds, so
    an interrupted export never leaves a folder that looks complete. With `command`, the folder
    is marked as that command's output (check_target then lets it rewrite it)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if command:
            (tmp / MARKER).write_text(command + "\n")
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """A temporary file name next to `final`, renamed into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def open_append(path: Path):
    """Append to a run file without following a symlink planted in its place (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if Path(path).is_symlink():
            raise UserError("is a symbolic link; run files are never written through links",
                            file=str(path), hint="remove the link") from None
        raise e
    return os.fdopen(fd, "a", buffering=1)


def read_json_object(path: Path, what: str) -> dict:
    """A JSON file that must hold an object; a damaged one is a one-line error naming it."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, absurd nesting
        raise DamagedFile(f"{what} is not valid JSON ({str(e)[:80]})", file=str(path),
                        hint="restore or re-download the file") from None
    if not isinstance(data, dict):
        raise DamagedFile(f"{what} must be a JSON object, got {type(data).__name__}",
                        file=str(path), hint="restore or re-download the file")
    return data


def disk_full(path: Path) -> bool:
    """Whether the disk holding `path` is (nearly) full. MLX's and safetensors' writers report
    ENOSPC as a RuntimeError ("Unable to write N bytes") without the errno; a failed write on a
    full disk leaves less than a block or two free (measured: 0 bytes on a 600 KB tmpfs)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (64 << 10)
