"""validate: generated code run through the user's validator (terraform validate, py_compile,
a YAML parse, ...). The code goes to `filename` in a fresh temporary folder and the command, an
argv list declared in the recipe (never a shell string, never taken from the data), runs there
with a timeout; pass_rate is the share that exit 0, and each failure keeps its first error line."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from .generate import answers


def extract_code(answer: str, language: str) -> str | None:
    """The first ```<language> fenced block; with no language, the first fenced block of any
    language, else the whole answer. None when a named language's block is missing."""
    lang = re.escape(language) if language else r"[^\n`]*"
    m = re.search(rf"```{lang}[ \t]*\n(.*?)(?:```|\Z)", answer, re.S)
    if m:
        return m.group(1)
    return None if language else answer


def validate(code: str, suite) -> str | None:
    """Run the validator on `code`; None when it passes, else the reason (first error line)."""
    with tempfile.TemporaryDirectory(prefix="eden-validate-") as tmp:
        (Path(tmp) / suite.filename).write_text(code, encoding="utf-8")
        argv = [a.replace("{file}", suite.filename) for a in suite.command]
        try:
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True,
                                  timeout=suite.timeout_s)
        except subprocess.TimeoutExpired:
            return f"timed out after {suite.timeout_s:g} s"
        except OSError as e:
            return f"cannot run {argv[0]!r}: {e.strerror}"
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    # The line that names the error: "Error: ..." (terraform), "SyntaxError: ..." (Python,
    # also the last line of a traceback), "error: ..." (compilers); else the first line.
    first = next((ln for ln in lines if re.match(r"([\w.]*(Error|Exception)\b|error\b)", ln,
                                                 re.I)), lines[0] if lines else "")
    return f"exit {proc.returncode}: {first[:300]}"


def run(ctx, suite) -> dict:
    records, _, ids, texts = answers(ctx, suite)
    failed = []
    for r, text in zip(records, texts, strict=True):
        code = extract_code(text, suite.language)
        why = f"no ```{suite.language} block in the answer" if code is None else \
            validate(code, suite)
        if why:
            failed.append({"where": r.where, "answer": text[:400], "reasons": [why]})
    n = len(records)
    return {"metrics": {"pass_rate": (n - len(failed)) / n, "n": n}, "failures": failed,
            "command": list(suite.command)}
