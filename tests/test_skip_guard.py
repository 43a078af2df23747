"""CI notices skips: a test skipped because an installed extra "is missing" fails the session
(tests/skip_guard.py); skips for other reasons stay skips; pytest's -ra lists every reason."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT
from .skip_guard import blamed_packages, installed

TESTS = '''
import pytest

def test_needs_torch():
    pytest.skip("needs the torch extra")

def test_importorskip():
    pytest.importorskip("a_module_nobody_installs_xyz")

def test_registry():
    pytest.skip("npm registry unreachable")

@pytest.mark.skipif(True, reason="cannot mount tmpfs")
def test_tmpfs():
    pass

def test_runs():
    assert True
'''


def run_session(tmp_path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    (tmp_path / "test_sample.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_guard",
                           "-p", "no:cacheprovider", str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)


def test_a_skip_for_an_installed_extra_fails_the_session(tmp_path):
    proc = run_session(tmp_path, TESTS)
    out = proc.stdout
    # -ra lists every skip reason, legitimate or not
    for reason in ("needs the torch extra", "npm registry unreachable", "cannot mount tmpfs",
                   "a_module_nobody_installs_xyz"):
        assert reason in out, out
    if installed("torch"):
        assert proc.returncode == 1, out
        assert "skipped although the extra is installed" in out
        assert "test_needs_torch: needs the torch extra  [installed: torch]" in out
    else:  # the extra really is missing: a skip is the right outcome
        assert proc.returncode == 0, out
    guard = out.split("skipped although")[-1].split("short test summary")[0]
    assert "test_registry" not in guard and "test_tmpfs" not in guard
    assert "a_module_nobody_installs_xyz" not in guard  # not a package of an extra


def test_legitimate_skips_keep_the_session_green(tmp_path):
    body = TESTS.replace('pytest.skip("needs the torch extra")', 'pass')
    proc = run_session(tmp_path, body)
    assert proc.returncode == 0, proc.stdout
    assert "4 skipped" not in proc.stdout and "3 skipped" in proc.stdout


def test_which_reasons_blame_which_packages():
    if installed("torch"):
        assert blamed_packages("needs the torch extra") == ["torch"]
        assert blamed_packages("could not import 'torch': No module named 'torch'") == ["torch"]
    if installed("llama-cpp-python"):
        assert blamed_packages("could not import 'llama_cpp': libggml.so: cannot open") == \
            ["llama-cpp-python"]
    assert blamed_packages("auto picks mlx on Apple Silicon") == []
    assert blamed_packages("torch backend runs elsewhere", markers=["torch"]) == []
    assert blamed_packages("npm registry unreachable") == []


def test_the_suite_runs_with_the_guard():
    """`make test` and CI run pytest on tests/: its conftest must carry the guard's hooks."""
    from . import conftest, skip_guard

    for hook in ("pytest_runtest_logreport", "pytest_terminal_summary", "pytest_sessionfinish"):
        assert getattr(conftest, hook) is getattr(skip_guard, hook)
