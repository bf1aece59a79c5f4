"""Chat prompt rendering with the model's own Jinja chat template, sandboxed.

GGUF files and Hugging Face repositories ship their chat template as Jinja
source. That source is untrusted input: llama-cpp-python's CVE-2024-34359 was
remote code execution through a malicious template in a GGUF file. So every
template here is compiled in an `ImmutableSandboxedEnvironment` (no access to
dunder attributes, no mutation of lists and dicts) that also charges every
loop, call and allocation to a render budget (see `jinja_limits` and
`render_budget`): a hostile template gets a 400, not a frozen server.

The environment mirrors what Hugging Face's `apply_chat_template` offers, so
real-world templates render the same way: `trim_blocks`, `lstrip_blocks`,
`loopcontrols`, the `raise_exception` and `strftime_now` globals, a `tojson`
filter that keeps non-ASCII text and the `{% generation %}` tag.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import SecurityError

from flexi.prompt.jinja_limits import BudgetedSandbox
from flexi.prompt.render_budget import MAX_OUTPUT_CHARS, RenderLimit, budget
from flexi.engine.types import BadRequest

__all__ = [
    "CHATML_TEMPLATE",
    "TemplateError",
    "render_chat",
    "template_supports_thinking",
    "template_supports_tools",
]

#: Used when a GGUF file carries no chat template: ChatML is what most small
#: instruction-tuned models of the last years (Qwen, SmolLM, Hermes) expect.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Denial-of-service limits (steps, deadline, sizes) live in render_budget and jinja_limits.
_CACHE_SIZE = 64


class TemplateError(BadRequest):
    """The chat template could not be compiled or rendered (a 400, with a readable cause)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _raise_exception(message: str = "error raised by the chat template") -> NoReturn:
    """`raise_exception('...')` in HF templates: reject the conversation (e.g. roles do not alternate)."""
    raise jinja2.exceptions.TemplateError(str(message))


def _strftime_now(fmt: str) -> str:
    """`strftime_now('%d %b %Y')`: Llama 3.x and others put today's date into the system prompt."""
    return datetime.now().strftime(str(fmt))


class _GenerationExtension(jinja2.ext.Extension):
    """Accept HF's `{% generation %}…{% endgeneration %}` (marks assistant tokens for training) and render its body."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


class _ChatTemplateEnvironment(BudgetedSandbox):
    """The budgeted sandbox, made strict: unsafe attribute access raises instead of rendering as ''."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:  # type: ignore[override]
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _make_environment() -> _ChatTemplateEnvironment:
    env = _ChatTemplateEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", _GenerationExtension],
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


# Immutable after creation (configuration only); compiled templates are safe to share across threads.
_ENV = _make_environment()


@lru_cache(maxsize=_CACHE_SIZE)
def _compile(template: str) -> jinja2.Template:
    """Compile once per distinct template string: parsing and code generation cost milliseconds."""
    return _ENV.from_string(template)


def _fail(exc: BaseException) -> NoReturn:
    if isinstance(exc, jinja2.exceptions.TemplateSyntaxError):
        detail = f"syntax error on line {exc.lineno}: {exc.message}"
    elif isinstance(exc, jinja2.exceptions.TemplateError):
        detail = exc.message or type(exc).__name__
    elif isinstance(exc, RenderLimit):
        detail = str(exc)
    elif isinstance(exc, RecursionError):
        detail = "the template recursed too deeply"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    raise TemplateError(f"the model's chat template could not be rendered: {detail}") from None


def _text_content(content: Any) -> str:
    """Message content as one string: templates concatenate it, so None and multi-part lists are flattened."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type", "text") == "text"
        )
    return str(content)


def _normalise_tool_call(call: Any) -> Any:
    """Give templates the HF shape {type, function: {name, arguments: dict}} whatever dialect sent the call.

    OpenAI sends `arguments` as a JSON string, Ollama as an object; HF templates
    do `tool_call.arguments | tojson`, which would double-encode a string.
    """
    if not isinstance(call, dict):
        return call
    out = dict(call)
    fn = out.get("function")
    fn = dict(fn) if isinstance(fn, dict) else {"name": out.get("name"), "arguments": out.get("arguments", {})}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            parsed = json.loads(args) if args.strip() else {}
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            fn["arguments"] = parsed
    elif args is None:
        fn["arguments"] = {}
    out["function"] = fn
    out.setdefault("type", "function")
    return out


def _normalise_message(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    out["content"] = _text_content(message.get("content"))
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [_normalise_tool_call(c) for c in calls]
    else:
        out.pop("tool_calls", None)  # templates test `message.tool_calls is defined`
    return out


def render_chat(
    template: str,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    extra: dict[str, Any] | None = None,
) -> str:
    """Render a conversation into the prompt text the model was trained on.

    `messages` are dicts {role, content, tool_calls?, tool_call_id?, name?};
    `tools` are OpenAI-style {"type": "function", "function": {...}} schemas;
    `extra` adds template variables (e.g. `enable_thinking`), never overriding
    the standard ones. Raises `TemplateError` (a 400) for broken or hostile
    templates and for conversations the template itself rejects.
    """
    context: dict[str, Any] = dict(extra or {})
    context.update(
        messages=[_normalise_message(m) for m in messages],
        tools=tools or None,  # templates test `{% if tools %}` or `tools is not none`
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )
    try:
        with budget() as b:
            compiled = _compile(template)
            parts: list[str] = []
            size = 0
            for piece in compiled.generate(context):
                size += len(piece)
                if size > MAX_OUTPUT_CHARS:
                    raise RenderLimit("the rendered prompt is too large")
                parts.append(piece)
                b.tick()
            return "".join(parts)
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside untrusted template code is the template's fault
        _fail(exc)


_TOOLS_RE = re.compile(r"\btools\b")


def template_supports_tools(template: str) -> bool:
    """Whether the template renders tool definitions (it refers to the `tools` variable)."""
    return bool(_TOOLS_RE.search(template))


def template_supports_thinking(template: str) -> bool:
    """Whether the model is a reasoning model whose template knows about thinking output."""
    return any(marker in template for marker in ("enable_thinking", "<think>", "reasoning_content"))
