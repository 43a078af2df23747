"""A small emulation of Go's text/template, enough to render Ollama Modelfile templates.

Go is not installed on the test machines, and no Python package renders Go templates; this covers
the subset our templates use, with Go's semantics (checked in tests/test_goemu.py against
documented Go behaviour): trim markers `{{- ` / ` -}}` eat all adjacent spaces, tabs and
newlines; if / else / else if / range (with $i, $x and else) / with; variables with := (scoped
to the enclosing block, reset each range iteration) and = (assigns the nearest declaration);
`$` is the top-level data; and/or stop at the first decisive argument (Go 1.18+); eq takes several
arguments; len, index, slice, not, ne, lt, le, gt, ge, print; `(pipeline).Field`. Truth follows
Go: false, 0, nil and empty strings/lists/maps are false. A missing field is an error, as it is
for a Go struct.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

WS = " \t\r\n"
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<op>:=|[()|=,])|'
                    r'(?P<word>[^\s()|=,"`]+))')


class GoTemplateError(Exception):
    pass


@dataclass
class Node:
    kind: str  # text | action | if | range | with
    text: str = ""
    tokens: list = field(default_factory=list)  # the action, tokenized
    body: list = field(default_factory=list)
    orelse: list = field(default_factory=list)


def _lex(src: str) -> list[tuple[str, str]]:
    """[('text', s) | ('action', inner)] with trim markers applied."""
    out, pos = [], 0
    while True:
        at = src.find("{{", pos)
        if at < 0:
            out.append(("text", src[pos:]))
            return out
        text = src[pos:at]
        inner_start = at + 2
        if src.startswith("-", inner_start) and src[inner_start + 1:inner_start + 2] in list(WS):
            text, inner_start = text.rstrip(WS), inner_start + 1
        out.append(("text", text))
        end = src.find("}}", inner_start)
        if end < 0:
            raise GoTemplateError("unclosed action")
        inner, pos = src[inner_start:end], end + 2
        if inner.endswith("-") and inner[-2:-1] in list(WS):
            inner = inner[:-1]
            while pos < len(src) and src[pos] in WS:
                pos += 1
        if not inner.strip().startswith("/*"):
            out.append(("action", inner.strip()))


def _tokens(inner: str) -> list[str]:
    toks, pos = [], 0
    while pos < len(inner):
        m = _TOKEN.match(inner, pos)
        if not m or m.end() == pos:
            if inner[pos:].strip():
                raise GoTemplateError(f"cannot read {inner[pos:]!r}")
            break
        tok = m.group(m.lastgroup)
        # `(x).Field`: a field right after ")" belongs to the parenthesized value
        if m.lastgroup == "word" and tok.startswith(".") and toks and toks[-1] == ")" and \
                m.start(m.lastgroup) == pos:
            toks[-1] = ")" + tok
        else:
            toks.append(tok)
        pos = m.end()
    return toks


def parse(src: str) -> list[Node]:
    items = _lex(src)
    nodes, rest = _parse_list(items, 0)
    if rest != len(items):
        raise GoTemplateError(f"unexpected {items[rest][1]!r}")
    return nodes


def _parse_list(items, i):
    """Nodes until an else/end at this level; returns (nodes, index of that else/end)."""
    nodes = []
    while i < len(items):
        kind, value = items[i]
        if kind == "text":
            if value:
                nodes.append(Node("text", text=value))
            i += 1
            continue
        toks = _tokens(value)
        head = toks[0] if toks else ""
        if head in ("end", "else"):
            return nodes, i
        if head in ("if", "range", "with"):
            node, i = _parse_block(head, toks[1:], items, i + 1)
            nodes.append(node)
            continue
        nodes.append(Node("action", tokens=toks))
        i += 1
    return nodes, i


def _parse_block(kind, toks, items, i):
    node = Node(kind, tokens=toks)
    node.body, i = _parse_list(items, i)
    if i >= len(items):
        raise GoTemplateError(f"{kind} without end")
    closing = _tokens(items[i][1])
    if closing[0] == "else" and len(closing) > 1:  # else if / else with: a nested block
        inner, i = _parse_block(closing[1], closing[2:], items, i + 1)
        node.orelse = [inner]
        return node, i  # the nested block consumed the shared {{end}}
    if closing[0] == "else":
        node.orelse, i = _parse_list(items, i + 1)
        closing = _tokens(items[i][1]) if i < len(items) else ["?"]
    if closing[0] != "end":
        raise GoTemplateError(f"{kind} without end")
    return node, i + 1


class GoJSON:
    """A value Ollama prints as JSON (its String() methods use json.Marshal: compact)."""

    def __init__(self, value, sort_keys: bool = True):
        self.value, self.sort_keys = value, sort_keys

    def __str__(self) -> str:
        return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False,
                          sort_keys=self.sort_keys)


def truth(v) -> bool:
    if isinstance(v, GoJSON):
        return True
    return not (v is None or v is False or (isinstance(v, (int, float)) and v == 0)
                or (isinstance(v, (str, list, dict, tuple)) and len(v) == 0))


def _show(v) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _same_kind(a, b):
    def kind(x):
        return ("bool" if isinstance(x, bool) else "int" if isinstance(x, int)
                else type(x).__name__)
    if kind(a) != kind(b):
        raise GoTemplateError(f"incompatible types for comparison: {a!r} and {b!r}")


def _eq(a, *rest):
    for b in rest:
        _same_kind(a, b)
    return any(a == b for b in rest)


def _cmp(op):
    def f(a, b):
        _same_kind(a, b)
        return op(a, b)
    return f


FUNCS = {
    "not": lambda a: not truth(a), "len": len, "eq": _eq, "ne": lambda a, b: not _eq(a, b),
    "lt": _cmp(lambda a, b: a < b), "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b), "ge": _cmp(lambda a, b: a >= b),
    "print": lambda *a: "".join(_show(x) for x in a),
}


def _index(x, *keys):
    for k in keys:
        if isinstance(x, list) and not 0 <= k < len(x):
            raise GoTemplateError(f"index out of range: {k}")
        x = x[k]
    return x


def _slice(x, *ij):
    i = ij[0] if ij else 0
    j = ij[1] if len(ij) > 1 else len(x)
    if not 0 <= i <= j <= len(x):
        raise GoTemplateError(f"slice index out of range: {i}:{j}")
    return x[i:j]


FUNCS.update(index=_index, slice=_slice)


class _State:
    def __init__(self, data):
        self.root, self.vars, self.out = data, [("$", data)], []

    def lookup(self, name):
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise GoTemplateError(f"undefined variable {name}")

    def assign(self, name, value):
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                self.vars[k] = (name, value)
                return
        raise GoTemplateError(f"undefined variable {name}")


def _fields(v, chain: str):
    for name in [p for p in chain.split(".") if p]:
        if not isinstance(v, dict) or name not in v:
            raise GoTemplateError(f"can't evaluate field {name} in {v!r}")
        v = v[name]
    return v


def _operand(st: _State, dot, toks: list[str], i: int):
    """Evaluate one operand at toks[i]; return (value, next index)."""
    t = toks[i]
    if t == "(":
        depth, j = 1, i + 1
        while depth:
            depth += toks[j] == "("
            depth -= toks[j].startswith(")")
            j += 1
        value = _pipeline(st, dot, toks[i + 1:j - 1])
        return _fields(value, toks[j - 1][1:]), j
    if t.startswith('"'):
        return json.loads(t), i + 1  # Go's escapes are JSON's for the strings we use
    if t.startswith("`"):
        return t[1:-1], i + 1
    if t.startswith("$"):
        name, _, chain = t.partition(".")
        return _fields(st.lookup(name), chain), i + 1
    if t.startswith("."):
        return _fields(dot, t), i + 1
    if t in ("true", "false"):
        return t == "true", i + 1
    if t == "nil":
        return None, i + 1
    if re.fullmatch(r"-?\d+", t):
        return int(t), i + 1
    raise GoTemplateError(f"unknown operand {t!r}")


def _command(st: _State, dot, toks: list[str], piped=None):
    if toks[0] in ("and", "or"):  # lazy: stop at the first false (and) / true (or) argument
        i, value = 1, None
        while i < len(toks):
            value, i = _operand(st, dot, toks, i)
            if truth(value) != (toks[0] == "and"):
                return value
        return value
    if toks[0] in FUNCS:
        args, i = [], 1
        while i < len(toks):
            v, i = _operand(st, dot, toks, i)
            args.append(v)
        if piped is not None:
            args.append(piped)
        return FUNCS[toks[0]](*args)
    value, i = _operand(st, dot, toks, 0)
    if i != len(toks):
        raise GoTemplateError(f"{toks[0]!r} is not a function")
    return value


def _pipeline(st: _State, dot, toks: list[str]):
    parts, depth, cur = [], 0, []
    for t in toks:
        depth += (t == "(") - t.startswith(")")
        if t == "|" and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    value = _command(st, dot, parts[0] if parts else cur)
    for p in (parts[1:] + [cur]) if parts else []:
        value = _command(st, dot, p, piped=value)
    return value


def _declared(toks: list[str]):
    """Split `$a, $b := pipeline` / `$a = pipeline` into (names, op, pipeline tokens)."""
    if len(toks) > 2 and toks[0].startswith("$"):
        if toks[1] in (":=", "="):
            return [toks[0]], toks[1], toks[2:]
        if toks[1] == "," and len(toks) > 4 and toks[3] == ":=":
            return [toks[0], toks[2]], ":=", toks[4:]
    return [], None, toks


def _walk(st: _State, dot, nodes: list[Node]):
    for n in nodes:
        mark = len(st.vars)
        if n.kind == "text":
            st.out.append(n.text)
        elif n.kind == "action":
            names, op, pipe = _declared(n.tokens)
            value = _pipeline(st, dot, pipe)
            if op == ":=":
                st.vars.append((names[0], value))  # lives until the enclosing block ends
            elif op == "=":
                st.assign(names[0], value)
            else:
                st.out.append(_show(value))
        elif n.kind in ("if", "with"):
            names, op, pipe = _declared(n.tokens)
            value = _pipeline(st, dot, pipe)
            if names:
                st.vars.append((names[0], value))
            if truth(value):
                _walk(st, value if n.kind == "with" else dot, n.body)
            else:
                _walk(st, dot, n.orelse)
            del st.vars[mark:]
        else:
            _range(st, dot, n)
            del st.vars[mark:]


def _range(st: _State, dot, n: Node):
    names, _, pipe = _declared(n.tokens)
    items = _pipeline(st, dot, pipe)
    if not truth(items):
        _walk(st, dot, n.orelse)
        return
    pairs = list(items.items()) if isinstance(items, dict) else list(enumerate(items))
    mark = len(st.vars)
    for k, v in pairs:
        if len(names) == 2:
            st.vars += [(names[0], k), (names[1], v)]
        elif names:
            st.vars.append((names[0], v))
        _walk(st, v, n.body)
        del st.vars[mark:]


def render(template: str, data) -> str:
    """Execute `template` on `data` (dicts stand for Go structs and maps) as Go would."""
    st = _State(data)
    _walk(st, data, parse(template))
    return "".join(st.out)
