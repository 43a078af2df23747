"""Raw inputs as a stream of items: one conversation's raw record (or its turn rows) and where
it came from (file:line, or table/rowid). JSONL and CSV through the standard library, SQLite
through `sqlite3` on the real database file.

A malformed line is yielded as an item with `error` set (the pipeline rejects or, with
--strict, stops); a problem with the source itself (missing file, bad query, missing column)
is a UserError before anything is written.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from ...errors import UserError


@dataclass
class RawItem:
    """One conversation as read: `raw` is the record (the first row of a grouped one), `rows`
    its turn rows when the source groups rows, `error` what was wrong with it."""

    where: str
    raw: dict = field(default_factory=dict)
    rows: list[dict] | None = None
    error: str | None = None


def _key(i: int, name: str) -> str:
    return f"sources.{i}.{name}"


def _jsonl(path: Path) -> Iterator[RawItem]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield RawItem(where, error=f"not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield RawItem(where, error="line is not a JSON object")
                continue
            yield RawItem(where, obj)


def _csv(path: Path) -> Iterator[RawItem]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        start = 2
        for row in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if None in row or any(v is None for v in row.values()):
                yield RawItem(where, error="row has a different number of cells than the header")
                continue
            yield RawItem(where, dict(row))


def _sqlite_cursor(path: Path, query: str, order: list[str], i: int):
    # Read-only URI: preparing data never writes to the user's database.
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    sql = query.strip().rstrip(";")
    if order:
        sql = f"SELECT * FROM ({sql}) ORDER BY {', '.join(_quote(c) for c in order)}"
    try:
        cur = con.execute(sql)
    except sqlite3.Error as e:
        con.close()
        raise UserError(f"query failed: {e}", file=str(path), key=_key(i, "query"),
                        hint="check the table and column names (sqlite3 FILE .schema)") from None
    return con, cur


def _quote(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def _sqlite(path: Path, spec, i: int) -> Iterator[RawItem]:
    order = [c for c in (spec.group_by, spec.order_by) if c]
    con, cur = _sqlite_cursor(path, spec.query, order, i)
    cols = [d[0] for d in cur.description]
    missing = [c for c in order if c not in cols]
    if missing:
        con.close()
        raise UserError(f"the query has no column {', '.join(missing)} (it has "
                        f"{', '.join(cols)})", file=str(path), key=_key(i, "group_by"))
    table = spec.query.split()
    where = f"{path}:query"
    if "from" in [t.lower() for t in table]:
        where = f"{path}:{table[[t.lower() for t in table].index('from') + 1]}"
    try:
        for n, row in enumerate(cur, 1):
            yield RawItem(f"{where}#{n}", dict(zip(cols, row, strict=True)))
    finally:
        con.close()


def _order(it: RawItem, spec):
    if not spec.order_by:
        return 0
    v = it.raw.get(spec.order_by)
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _grouped_sqlite(items: Iterator[RawItem], spec) -> Iterator[RawItem]:
    """Rows sharing `group_by` (the query is ordered by it, then by `order_by`) form one
    conversation: streamed, one group in memory at a time."""
    for _, group in groupby(items, key=lambda it: str(it.raw.get(spec.group_by))):
        rows = list(group)
        yield RawItem(rows[0].where, rows[0].raw, [r.raw for r in rows])


def read_source(spec, i: int) -> Iterator[RawItem]:
    """Stream the items of source number `i` (its spec from the prepare recipe)."""
    path = Path(spec.path)
    if not path.is_file():
        raise UserError("source file not found", file=str(path), key=_key(i, "path"),
                        hint="check the path (relative paths start at the current directory)")
    if spec.type == "sqlite":
        items = _sqlite(path, spec, i)
        return _grouped_sqlite(items, spec) if spec.group_by else items
    items = _jsonl(path) if spec.type == "jsonl" else _csv(path)
    return _group_files(items, spec) if spec.group_by else items


def _group_files(items: Iterator[RawItem], spec) -> Iterator[RawItem]:
    """JSONL/CSV turn rows -> conversations. Grouped in memory (a file need not be sorted);
    a large turn-per-row export is better read from SQLite, which sorts in the query."""
    good: list[RawItem] = []
    for it in items:
        if it.error is None and spec.group_by not in it.raw:
            it = RawItem(it.where, error=f"field {spec.group_by!r} is missing")
        if it.error is not None:
            yield it
        else:
            good.append(it)
    good.sort(key=lambda it: (str(it.raw[spec.group_by]), _order(it, spec)))
    for _, group in groupby(good, key=lambda it: str(it.raw[spec.group_by])):
        rows = list(group)
        yield RawItem(rows[0].where, rows[0].raw, [r.raw for r in rows])


def source_sha256(spec) -> str:
    """SHA-256 of the source file's bytes (for metadata.json)."""
    import hashlib

    h = hashlib.sha256()
    with open(spec.path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
