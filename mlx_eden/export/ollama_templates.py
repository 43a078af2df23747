"""Qwen's chat templates in Ollama's Go text/template language.

Each renders, from Ollama's request values, the text the Jinja template in the GGUF renders for
the same conversation (tests/test_ollama_template.py runs both on Qwen2.5's and Qwen3's real
templates). What Ollama does before the template runs, and the template relies on:
- the Modelfile's SYSTEM is prepended as a system message when the request has none, so the
  templates render the first message's system text and never a built-in default;
- `.Messages` keeps system messages; tool results are role "tool"; an assistant's reasoning is
  in `.Thinking`, apart from `.Content`; `.Think`/`.IsThinkSet` carry the request's `think`;
- tools and tool-call arguments print as JSON (Go's json.Marshal: compact, where Jinja's tojson
  writes `{"a": 1}`; the keys and values are the same);
- consecutive messages of one role (except tool) are merged with a blank line (Ollama's
  template.collate); no template can undo that, so such chats differ from Jinja's rendering.
Checked against Ollama's template/template.go (Values, Execute, collate).
Go templates have no arithmetic, so the previous role is carried in `$prev` and the next one read
with `index (slice $.Messages $i) 1`; `and`/`or` stop at the first decisive argument (Go 1.18+).
"""

from __future__ import annotations

# First message is a system message (Jinja: messages[0].role == 'system').
_SYSTEM_FLAG = """{{- $sys := false }}{{ $prev := "" }}
{{- range $i, $m := .Messages }}{{ if and (eq $i 0) (eq $m.Role "system") }}{{ $sys = true }}\
{{ end }}{{ end }}"""

_TOOLS_BODY = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
"""

_FIRST_SYSTEM = """{{ range $i, $m := $.Messages }}{{ if and (eq $i 0) $sys }}{{ $m.Content }}\
{{ end }}{{ end }}"""

_USER = """{{- if or (eq .Role "user") (and (eq .Role "system") (ne $i 0)) }}<|im_start|>\
{{ .Role }}
{{ .Content }}<|im_end|>
"""

_TOOL = """{{ else if eq .Role "tool" }}{{ if ne $prev "tool" }}<|im_start|>user{{ end }}
<tool_response>
{{ .Content }}
</tool_response>{{ if or $last (ne (index (slice $.Messages $i) 1).Role "tool") }}<|im_end|>
{{ end }}{{ end }}"""

_CALL = """<tool_call>
{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
</tool_call>"""

QWEN25 = _SYSTEM_FLAG + """
{{- if .Tools }}<|im_start|>system
""" + _FIRST_SYSTEM + "\n\n" + _TOOLS_BODY + """{{ else if $sys }}<|im_start|>system
""" + _FIRST_SYSTEM + """<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
""" + _USER + """{{ else if eq .Role "assistant" }}<|im_start|>assistant\
{{ if or .Content (not .ToolCalls) }}
{{ .Content }}{{ end }}
{{- range .ToolCalls }}
""" + _CALL + """
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}""" + _TOOL + """
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- $prev = .Role }}
{{- end }}"""

# Qwen3: the <think> block goes on assistant turns after the last user query (always on the
# last one); THINK_OFF is filled in by the exporter from data.chat_template_args.
QWEN3 = _SYSTEM_FLAG + """
{{- $query := -1 }}{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{{ $query = $i }}\
{{ end }}{{ end }}
{{- if .Tools }}<|im_start|>system
{{ if $sys }}""" + _FIRST_SYSTEM + """

{{ end }}""" + _TOOLS_BODY + """{{ else if $sys }}<|im_start|>system
""" + _FIRST_SYSTEM + """<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
""" + _USER + """{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if and (gt $i $query) (or $last .Thinking) }}<think>
{{ .Thinking }}
</think>

{{ end }}{{ .Content }}{{ $content := .Content }}
{{- range $j, $_ := .ToolCalls }}{{ if or $j $content }}
{{ end }}""" + _CALL + """
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}""" + _TOOL + """
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
THINK_OFF{{ end }}
{{- $prev = .Role }}
{{- end }}"""

EMPTY_THINK = "<think>\n\n</think>\n\n"
# enable_thinking false: no reasoning unless the request asks for it (think: true) ...
THINK_OFF_BY_DEFAULT = "{{ if not (and $.IsThinkSet $.Think) }}" + EMPTY_THINK + "{{ end }}"
# ... enable_thinking true or unset: reasoning unless the request says think: false.
THINK_ON_BY_DEFAULT = "{{ if and $.IsThinkSet (not $.Think) }}" + EMPTY_THINK + "{{ end }}"


def go_template(jinja: str, args: dict) -> str:
    """The Go template for a Qwen Jinja chat template rendered with template variables `args`."""
    if "enable_thinking" not in jinja and "<think>" not in jinja:
        return QWEN25
    off = args.get("enable_thinking", True) is False
    return QWEN3.replace("THINK_OFF", THINK_OFF_BY_DEFAULT if off else THINK_ON_BY_DEFAULT)
