"""Tool calls recovered from generated text."""

from __future__ import annotations

import pytest

from flexi.prompt.toolcalls import parse_tool_calls

TOOLS = {"get_weather", "search"}
PARIS = {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_plain_text_is_untouched() -> None:
    text = "The weather in Paris is mild today."
    assert parse_tool_calls(text, TOOLS) == (text, [])
    assert parse_tool_calls("", TOOLS) == ("", [])


def test_no_tools_offered_means_no_calls() -> None:
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse_tool_calls(text, set()) == (text, [])


def test_hermes_single() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse_tool_calls(text, TOOLS) == ("", [PARIS])


def test_hermes_several_with_prose() -> None:
    text = (
        "Let me check both.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "search", "arguments": {"q": "Zürich Wetter"}}\n</tool_call>'
    )
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == "Let me check both."
    assert calls == [PARIS, {"name": "search", "arguments": {"q": "Zürich Wetter"}}]


def test_hermes_unclosed_last_call() -> None:
    # generation often stops on the closing tag, so it never appears in the text
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse_tool_calls(text, TOOLS) == ("", [PARIS])


def test_hermes_unknown_or_broken_block_stays_content() -> None:
    text = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    assert parse_tool_calls(text, TOOLS) == (text, [])
    broken = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    assert parse_tool_calls(broken, TOOLS) == (broken, [])
    mixed = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call><tool_call>{"name": "search", "arguments": {}}</tool_call>'
    content, calls = parse_tool_calls(mixed, TOOLS)
    assert content == '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    assert calls == [{"name": "search", "arguments": {}}]


def test_llama31_parameters() -> None:
    text = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert parse_tool_calls(text, TOOLS) == ("", [PARIS])
    tagged = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert parse_tool_calls(tagged, TOOLS) == ("", [PARIS])
    chained = '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "search", "parameters": {"q": "x"}}'
    assert parse_tool_calls(chained, TOOLS)[1] == [PARIS, {"name": "search", "arguments": {"q": "x"}}]


def test_mistral_json_list() -> None:
    text = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "search", "arguments": {"q": "x"}}]'
    assert parse_tool_calls(text, TOOLS) == ("", [PARIS, {"name": "search", "arguments": {"q": "x"}}])
    assert parse_tool_calls(' [TOOL_CALLS] {"name": "get_weather", "arguments": {"city": "Paris"}}', TOOLS) == (
        "",
        [PARIS],
    )


def test_mistral_args_tokens() -> None:
    text = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]search[ARGS]{"q": "x"}'
    assert parse_tool_calls(text, TOOLS) == ("", [PARIS, {"name": "search", "arguments": {"q": "x"}}])
    assert parse_tool_calls("[TOOL_CALLS]rm_rf[ARGS]{}", TOOLS) == ("[TOOL_CALLS]rm_rf[ARGS]{}", [])


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '  {"name": "get_weather", "arguments": {"city": "Paris"}}\n',
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',  # double-encoded arguments
        '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
    ],
)
def test_bare_json(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == ("", [PARIS])


def test_missing_arguments_default_to_empty() -> None:
    assert parse_tool_calls('{"name": "search"}', TOOLS) == ("", [{"name": "search", "arguments": {}}])


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "Ada", "age": 36}',  # JSON that is an answer, not a call
        '{"name": "get_weather", "arguments": {"city": "Paris"}} and more text',
        '[{"name": "get_weather", "arguments": {}}, {"name": "unknown", "arguments": {}}]',
        '{"name": "get_weather", "arguments": [1, 2]}',
        '{"name": "get_weather", "arguments": "not json"}',
        "[]",
        '{"name": "get_weather", "arguments": {"city": "Paris"}',  # truncated
        'Here is an example: {"name": "get_weather", "arguments": {}}',
    ],
)
def test_not_calls(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == (text, [])
