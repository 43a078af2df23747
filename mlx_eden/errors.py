"""The one exception the CLI turns into a single line and exit code 2.

Everything a user can fix themselves (a typo in a recipe, a malformed JSONL line, a missing
file) is raised as `UserError`, so the CLI never shows a traceback for it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: where it is (file, line, key), what is wrong, what to do."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ):
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        if self.key:
            where = f"{where}: {self.key}" if where else self.key
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


class UserErrors(UserError):
    """Several problems found in one pass (recipe validation collects them all)."""

    def __init__(self, errors: list[UserError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class DamagedFile(UserError):
    """A file the project wrote (or a model folder holds) is unreadable: truncated, corrupt, not
    the expected JSON. Resume uses it to fall back to an older checkpoint."""


class PeerLost(RuntimeError):
    """Data parallel: another rank died or stopped answering. Not bad input (exit 1), but its
    message is already the whole line (which rank, what to do), so the CLI prints it as is."""
