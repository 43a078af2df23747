"""Fail the session when a test skips for an extra that is installed.

If torch or llama-cpp-python is installed but fails to import, every test that needs it skips
and the suite still passes: CI would stay green while a third of the product goes untested
(issue 15 counted ~36 such skips). Skips for other reasons stay legitimate (no chromium, a
registry out of reach, not Linux): the rule is only "a skip whose reason says a package of an
installed extra is missing". pytest's own `-ra` still lists every skip reason.
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest

# The words a skip reason uses for a package -> the distribution that provides it.
PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "llama_cpp": "llama-cpp-python",
    "llama-cpp": "llama-cpp-python",
    "llama.cpp": "llama-cpp-python",
    "gguf": "gguf",
    "tensorboardX": "tensorboardX",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
}
# ...and the words that say it is missing (pytest.importorskip: "could not import 'x'").
MISSING = re.compile(r"needs|not installed|could not import|no module|missing|requires|extra",
                     re.IGNORECASE)
MARKERS = {"torch": "torch", "gguf": "llama-cpp-python"}


def installed(dist: str) -> bool:
    """Is the distribution installed (whether or not it imports)?"""
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def blamed_packages(reason: str, markers=()) -> list[str]:
    """The installed distributions a skip with this reason (or these markers) blames."""
    if not MISSING.search(reason):  # "auto picks mlx on Apple Silicon": not about a package
        return []
    low = reason.lower()
    found = {dist for word, dist in PACKAGES.items() if word in low}
    # A test marked torch/gguf that skips because "something" is missing blames its extra.
    found |= {MARKERS[m] for m in markers if m in MARKERS}
    return sorted(d for d in found if installed(d))


_unexpected: list[tuple[str, str, list[str]]] = []


def pytest_runtest_logreport(report):
    if not report.skipped or getattr(report, "wasxfail", None) is not None:
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) \
        else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    dists = blamed_packages(reason, [k for k in MARKERS if k in report.keywords])
    if dists:
        _unexpected.append((report.nodeid, reason, dists))


def pytest_terminal_summary(terminalreporter):
    if not _unexpected:
        return
    tr = terminalreporter
    tr.section("skipped although the extra is installed", sep="=", red=True, bold=True)
    for nodeid, reason, dists in _unexpected:
        tr.line(f"{nodeid}: {reason}  [installed: {', '.join(dists)}]")
    tr.line("These packages are installed but the tests skipped for them: check that they "
            "import (python -c 'import torch, llama_cpp').")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _unexpected and session.exitstatus == 0:
        session.exitstatus = 1
