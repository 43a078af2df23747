"""The Go text/template emulation (tests/goemu.py) against Go's documented behaviour: the
expected strings are what `text/template` produces for these templates (pkg.go.dev/text/template:
"Text and spaces", "Variables", "Functions")."""

import pytest

from .goemu import GoTemplateError, render


@pytest.mark.parametrize("template, want", [
    ("a  \n {{- 1 }}  b", "a1  b"),  # "{{- " trims all preceding spaces and newlines
    ("a {{ 1 -}} \n\t b", "a 1b"),  # " -}}" trims all following ones
    ("{{23 -}} < {{- 45}}", "23<45"),  # the example in the Go docs
    ("a {{-3}}", "a -3"),  # no space after the dash: a negative number, no trim
    ("x{{/* a comment */}}y", "xy"),
    ("x \n{{- /* c */ -}}\n y", "xy"),
    ("{{ if \"\" }}t{{ else }}f{{ end }}{{ if 0 }}t{{ else }}f{{ end }}", "ff"),
    ("{{ if .L }}t{{ else if .S }}s{{ else }}f{{ end }}", "s"),
    ("{{ range .L }}x{{ else }}empty{{ end }}", "empty"),
    ("{{ range $i, $x := .M }}{{ $i }}={{ $x }};{{ end }}", "0=a;1=b;2=c;"),
    ("{{ range .M }}{{ . }}{{ end }}", "abc"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    ("{{ $n := 0 }}{{ range $i, $_ := .M }}{{ $n = $i }}{{ end }}{{ $n }}", "2"),
    ("{{ if and false (index .M 5) }}t{{ else }}f{{ end }}", "f"),  # and stops early (Go 1.18)
    ("{{ if or true (index .M 5) }}t{{ end }}", "t"),
    ("{{ and 1 0 2 }} {{ or 0 \"\" 3 }}", "0 3"),  # and/or return an argument
    ("{{ eq 2 1 2 }} {{ ne \"a\" \"b\" }} {{ gt 3 2 }}", "true true true"),
    ("{{ len (slice .M 1) }} {{ index .M 2 }}", "2 c"),
    ("{{ (index .P 0).Role }}", "user"),
    ("{{ with .S }}[{{ . }}]{{ end }}", "[s]"),
    ("{{ .Missing }}", GoTemplateError),  # no such struct field
    ("{{ eq 1 \"1\" }}", GoTemplateError),  # incompatible types for comparison
    ("{{ index .M 3 }}", GoTemplateError),
])
def test_go_semantics(template, want):
    data = {"L": [], "S": "s", "M": ["a", "b", "c"], "P": [{"Role": "user"}]}
    if want is GoTemplateError:
        with pytest.raises(GoTemplateError):
            render(template, data)
    else:
        assert render(template, data) == want
