"""Recover tool calls from the plain text a model generated.

The local engine produces text only. Models trained for tool use write their
calls in a few well-known shapes, and the API layer turns those back into
structured `tool_calls`:

* Hermes / Qwen: ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``, possibly several,
  possibly surrounded by prose (which stays as content);
* Mistral: ``[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`` or ``[TOOL_CALLS]name[ARGS]{…}``;
* Llama 3.1: the whole reply is ``{"name": …, "parameters": {…}}`` (optionally after ``<|python_tag|>``);
* any model: the whole reply is a JSON object or array of ``{name, arguments}``, optionally in a
  ```` ```json ```` fence, or OpenAI-shaped ``{"type": "function", "function": {…}}``.

Only names the request actually offered count as calls; anything else stays
content, so a model that merely talks about JSON is never turned into a call.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["parse_tool_calls"]

_DECODER = json.JSONDecoder()
_HERMES_OPEN = "<tool_call>"
_HERMES_CLOSE = "</tool_call>"
_MISTRAL = "[TOOL_CALLS]"
_FENCE_RE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.DOTALL)
_PREFIXES = ("<|python_tag|>", "functools")  # Llama 3.1 python tag; Firefunction/functionary style prefix


def _as_call(obj: Any, tool_names: set[str]) -> dict[str, Any] | None:
    """Normalise one decoded call to {"name", "arguments": dict}, or None if it is not a call we accept."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict) and "name" not in obj:  # OpenAI shape
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or name not in tool_names:
        return None
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return {"name": name, "arguments": args}


def _decode_prefix(text: str) -> tuple[Any, int] | None:
    """Decode the JSON value at the start of `text`; returns (value, end index) or None."""
    try:
        return _DECODER.raw_decode(text)
    except ValueError:
        return None


def _calls_from_value(value: Any, tool_names: set[str]) -> list[dict[str, Any]] | None:
    """A JSON object or list of objects where every element is an acceptable call; else None."""
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    calls = [_as_call(v, tool_names) for v in items]
    if any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


def _parse_hermes(text: str, tool_names: set[str]) -> tuple[str, list[dict[str, Any]]] | None:
    if _HERMES_OPEN not in text:
        return None
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    pos = 0
    while (start := text.find(_HERMES_OPEN, pos)) >= 0:
        body_start = start + len(_HERMES_OPEN)
        close = text.find(_HERMES_CLOSE, body_start)
        end = close + len(_HERMES_CLOSE) if close >= 0 else len(text)  # generation may stop at the close tag
        body = text[body_start : close if close >= 0 else len(text)].strip()
        decoded = _decode_prefix(body)
        found = None
        if decoded is not None and not body[decoded[1] :].strip():
            found = _calls_from_value(decoded[0], tool_names)
        kept.append(text[pos:start])
        if found:
            calls.extend(found)
        else:
            kept.append(text[start:end])  # not a call we accept: leave it visible
        pos = end
    kept.append(text[pos:])
    if not calls:
        return None
    return "".join(kept).strip(), calls


def _parse_mistral(text: str, tool_names: set[str]) -> tuple[str, list[dict[str, Any]]] | None:
    idx = text.find(_MISTRAL)
    if idx < 0:
        return None
    before, rest = text[:idx], text[idx + len(_MISTRAL) :]
    calls: list[dict[str, Any]] = []
    stripped = rest.lstrip()
    if stripped.startswith(("[", "{")):
        decoded = _decode_prefix(stripped)
        if decoded is None:
            return None
        found = _calls_from_value(decoded[0], tool_names)
        if not found:
            return None
        return (before + stripped[decoded[1] :]).strip(), found
    # v11+ tokenizer: [TOOL_CALLS]name[ARGS]{...}[TOOL_CALLS]name2[ARGS]{...}
    for chunk in text[idx:].split(_MISTRAL)[1:]:
        name, sep, args_text = chunk.partition("[ARGS]")
        if not sep:
            return None
        decoded = _decode_prefix(args_text.strip())
        if decoded is None:
            return None
        call = _as_call({"name": name.strip(), "arguments": decoded[0]}, tool_names)
        if call is None:
            return None
        calls.append(call)
    return before.strip(), calls


def _parse_whole(text: str, tool_names: set[str]) -> tuple[str, list[dict[str, Any]]] | None:
    body = text.strip()
    for prefix in _PREFIXES:
        if body.startswith(prefix):
            body = body[len(prefix) :].strip()
    fence = _FENCE_RE.match(body)
    if fence:
        body = fence.group(1).strip()
    if not body or body[0] not in "[{":
        return None
    decoded = _decode_prefix(body)
    if decoded is None:
        return None
    value, end = decoded
    tail = body[end:].strip()
    if tail:
        # Llama 3.x sometimes chains calls with ";"
        values = [value]
        while tail.startswith(";"):
            tail = tail[1:].strip()
            if not tail:
                break
            nxt = _decode_prefix(tail)
            if nxt is None:
                return None
            values.append(nxt[0])
            tail = tail[nxt[1] :].strip()
        if tail:
            return None
        value = values
    found = _calls_from_value(value, tool_names)
    return ("", found) if found else None


def parse_tool_calls(text: str, tool_names: set[str]) -> tuple[str, list[dict[str, Any]]]:
    """Split generated text into (remaining content, tool calls [{"name", "arguments": dict}]).

    With no tool names, or when nothing in the text is a call to one of them,
    the text comes back unchanged with no calls.
    """
    if not tool_names or not text:
        return text, []
    for parser in (_parse_hermes, _parse_mistral, _parse_whole):
        result = parser(text, tool_names)
        if result is not None:
            return result
    return text, []
