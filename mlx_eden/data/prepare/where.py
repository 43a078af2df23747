"""Field conditions (`satisfaction >= 3`, `execution.success == true`) and dotted paths.

Hand-written: a condition is one comparison, and a general expression language (e.g. eval, jmespath)
would either run user text as code or add a dependency for six operators.
"""

from __future__ import annotations

import operator
import re

import yaml

_MISSING = object()
_OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
        ">": operator.gt, "<": operator.lt}
_COND = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*$")


class MissingField(KeyError):
    """A dotted path that is not in the record; the message names the path."""


def lookup(record, path: str):
    """The value at dotted `path` (task.description, messages.0.content) in a nested record."""
    node = record
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise MissingField(path)
    return node


def parse_condition(text: str):
    """'PATH OP VALUE' -> (path, op name, value); the value is read as YAML (3, true, 'x')."""
    m = _COND.match(str(text))
    if not m:
        raise ValueError(f"cannot read condition {text!r}: expected 'PATH OP VALUE' with OP one of "
                         f"{' '.join(_OPS)}, e.g. 'satisfaction >= 3'")
    path, op, raw = m.groups()
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return path, op, value


def _as(value, like):
    """Read `value` as the type of the condition's constant: CSV and SQLite give text and 0/1."""
    if isinstance(like, bool):
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no", ""):
                return False
        return bool(value) if isinstance(value, (int, float)) else value
    if isinstance(like, (int, float)) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def matches(record, condition) -> bool:
    """Does the record meet the parsed condition? Raises MissingField for a missing path and
    TypeError when the value cannot be compared (a malformed row)."""
    path, op, want = condition
    got = _as(lookup(record, path), want)
    return bool(_OPS[op](got, want))
