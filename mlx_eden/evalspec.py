"""The evaluation section of a recipe: one dataclass per suite kind (its keys, with help, and
METRICS, the names a gate may use), gates, and their cross-checks. recipe.py builds and validates
them like every other key; mlx_eden/eval/suites/ holds one module per kind (a test checks both
name the same kinds)."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Literal

from .errors import UserError
from .fields import _f


@dataclass(frozen=True)
class SuiteBase:
    name: str = _f("", "Suite name: the results file RUN_DIR/eval/<name>.json and the gate "
                   "prefix (<name>.<metric>).")
    kind: str = _f("", "loss, classify, generate, validate, style, choice or latency.")
    data: str = _f("", "JSONL file of the suite's records (file:line errors like training data).")
    limit: int | None = _f(None, "Use the first N records only; null = all.")
    NEEDS_DATA = True  # class attributes, not keys: what the kind needs and can be gated on
    METRICS = ()


@dataclass(frozen=True)
class _Generating(SuiteBase):
    max_new_tokens: int = _f(256, "Greedy tokens generated per prompt at most.")
    batch_size: int = _f(8, "Prompts generated together (batched, left-padded).")


@dataclass(frozen=True)
class LossSuite(SuiteBase):
    split: Literal["", "train", "valid", "test"] = _f(
        "", "Use this split of the recipe's data instead of `data`.")
    batch_size: int = _f(8, "Rows per forward pass.")
    NEEDS_DATA = False
    METRICS = ("loss", "perplexity", "tokens")


@dataclass(frozen=True)
class ClassifySuite(_Generating):
    split: Literal["", "train", "valid", "test"] = _f(
        "", "Use this split of the recipe's data instead of `data`.")
    labels: list[str] = _f([], "The labels; empty = eval.labels.")
    balanced: bool = _f(False, "Add the class-balanced view (every class weighted equally) "
                        "beside the natural one.")
    max_new_tokens: int = _f(16, "Greedy tokens generated per prompt at most.")
    NEEDS_DATA = False
    METRICS = ("accuracy", "macro_f1", "invalid_rate", "balanced_accuracy", "balanced_macro_f1",
               "n")


@dataclass(frozen=True)
class ChecksSpec:
    exact: bool = _f(False, "The answer equals the record's reference (trimmed, case-folded).")
    contains: list[str] = _f([], "Strings the answer must contain (all of them).")
    regex: str | None = _f(None, "A Python regular expression the answer must match (search).")
    min_chars: int | None = _f(None, "Shortest acceptable answer in characters.")
    max_tokens: int | None = _f(None, "Longest acceptable answer in generated tokens.")
    hangul_ratio_min: float | None = _f(None, "Least Hangul share of the answer's letters.")
    latin_ratio_max: float | None = _f(None, "Largest Latin share of the answer's letters "
                                       "(language mixing).")
    max_repeat_ngram: int | None = _f(None, "Most times any word n-gram may occur (degenerate "
                                      "output repeats itself).")
    ngram: int = _f(4, "n of max_repeat_ngram.")


@dataclass(frozen=True)
class GenerateSuite(_Generating):
    checks: ChecksSpec = _f(ChecksSpec, "Checks every answer must pass.")
    METRICS = ("success_rate", "mean_tokens", "n")


@dataclass(frozen=True)
class ValidateSuite(_Generating):
    command: list[str] = _f([], "Validator argv (no shell), run in a fresh temporary folder "
                            "holding the answer's code; {file} is replaced by the file name.")
    filename: str = _f("answer.txt", "Name of the file the code is written to.")
    language: str = _f("", "Take the first ```<language> fenced block; empty = the whole "
                       "answer (or its first fenced block, if any).")
    timeout_s: float = _f(30.0, "Seconds before a validator run counts as failed.")
    max_new_tokens: int = _f(512, "Greedy tokens generated per prompt at most.")
    METRICS = ("pass_rate", "n")


@dataclass(frozen=True)
class StyleSuite(_Generating):
    prefixes: list[str] = _f([], "Two or more control prefixes; ratio = mean output tokens "
                             "under the last / under the first.")
    place: Literal["system", "user"] = _f("system", "Where the prefix goes: the system prompt, "
                                          "or in front of the user message.")
    METRICS = ("ratio", "mean_tokens_first", "mean_tokens_last", "n")


@dataclass(frozen=True)
class ChoiceSuite(SuiteBase):
    batch_size: int = _f(16, "Choices scored per forward pass.")
    METRICS = ("accuracy", "accuracy_norm", "n")


@dataclass(frozen=True)
class LatencySuite(_Generating):
    max_new_tokens: int = _f(64, "Tokens generated per prompt, exactly (stop tokens ignored).")
    METRICS = ("ttft_p50_s", "ttft_p90_s", "ttft_mean_s", "latency_p50_s", "latency_p90_s",
               "latency_mean_s", "tokens_per_s", "peak_memory_gb", "n")


SUITE_KINDS: dict[str, type[SuiteBase]] = {
    "loss": LossSuite, "classify": ClassifySuite, "generate": GenerateSuite,
    "validate": ValidateSuite, "style": StyleSuite, "choice": ChoiceSuite,
    "latency": LatencySuite}


@dataclass(frozen=True)
class GateSpec:
    min: float | None = _f(None, "The value must be at least this.")
    max: float | None = _f(None, "The value must be at most this.")
    max_drop: float | None = _f(None, "The value may fall at most this much below the baseline.")
    max_rise: float | None = _f(None, "The value may rise at most this much above the baseline.")

    def describe(self) -> str:
        parts = [f"{k} {v:g}" for k, v in dataclasses.asdict(self).items() if v is not None]
        return ", ".join(parts)



def validate_eval(ev, src) -> list[UserError]:
    """Suites need what their kind needs; a gate must name a declared suite and a metric of it
    (`src` is recipe.py's key-to-line map: every error names its file and line)."""

    e: list[UserError] = []
    names: dict[str, SuiteBase] = {}
    for i, s in enumerate(ev.suites):
        key = f"eval.suites.{i}"
        if type(s) is SuiteBase:
            continue  # unknown kind, already reported
        if not s.name or s.name in names or "." in s.name:
            e.append(src.error(f"{key}.name", f"suite name {s.name!r} must be unique, non-empty "
                               "and without dots"))
        names[s.name] = s
        has_split = bool(getattr(s, "split", ""))
        if s.NEEDS_DATA and not s.data or not s.NEEDS_DATA and not (s.data or has_split):
            e.append(src.error(f"{key}.data", f"suite {s.name!r} needs a data file" +
                               ("" if s.NEEDS_DATA else " or a split"), "e.g. data: evals/x.jsonl"))
        for k in ("batch_size", "max_new_tokens", "limit"):
            v = getattr(s, k, 1)
            if isinstance(v, int) and v < 1:
                e.append(src.error(f"{key}.{k}", "must be at least 1"))
        if isinstance(s, ValidateSuite) and not s.command:
            e.append(src.error(f"{key}.command", "a validate suite needs the validator's argv",
                               "e.g. command: [python, -m, py_compile, '{file}']"))
        if isinstance(s, StyleSuite) and len(s.prefixes) < 2:
            e.append(src.error(f"{key}.prefixes", "a style suite needs at least two prefixes"))
        if isinstance(s, GenerateSuite) and s.checks.regex is not None:
            try:
                re.compile(s.checks.regex)
            except re.error as err:
                e.append(src.error(f"{key}.checks.regex", f"not a valid regular expression: {err}"))
    for path, gate in ev.gates.items():
        key = f"eval.gates.{path}"
        suite, _, metric = path.partition(".")
        if suite not in names:
            e.append(src.error(key, f"gate on unknown suite {suite!r}",
                               f"declared suites: {', '.join(names) or 'none'}"))
        elif metric not in names[suite].METRICS:
            close = difflib.get_close_matches(metric, names[suite].METRICS, 1)
            e.append(src.error(key, f"suite {suite!r} has no metric {metric!r}",
                               f"did you mean {close[0]}?" if close else
                               f"its metrics: {', '.join(names[suite].METRICS)}"))
        if isinstance(gate, GateSpec) and not gate.describe():
            e.append(src.error(key, "a gate needs a condition: min, max, max_drop or max_rise"))
    return e
