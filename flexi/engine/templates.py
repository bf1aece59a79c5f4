"""Chat prompt rendering with the model's own Jinja chat template, sandboxed.

GGUF files and Hugging Face repositories ship their chat template as Jinja
source. That source is untrusted input: llama-cpp-python's CVE-2024-34359 was
remote code execution through a malicious template in a GGUF file. So every
template here is compiled in an `ImmutableSandboxedEnvironment` (no access to
dunder attributes, no mutation of lists and dicts), with a few extra guards
against denial of service (big `range`s, huge `*` and `**` results).

The environment mirrors what Hugging Face's `apply_chat_template` offers, so
real-world templates render the same way: `trim_blocks`, `lstrip_blocks`,
`loopcontrols`, the `raise_exception` and `strftime_now` globals, a `tojson`
filter that keeps non-ASCII text and the `{% generation %}` tag.
"""

from __future__ import annotations

import contextvars
import json
import operator
import re
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

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

# Denial-of-service guards. A sandbox stops code execution but not a template
# that loops for an hour or builds a 10 GB string.
MAX_RANGE_ITEMS_PER_RENDER = 1_000_000  # total over all `range()` calls in one render
MAX_SEQUENCE_LENGTH = 1_000_000  # result of `str * n` / `list * n`
MAX_POWER_EXPONENT = 1_000  # `a ** b`
MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # a prompt larger than this is never legitimate
_CACHE_SIZE = 64

_range_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("flexi_template_range_budget")


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


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    """HF's `tojson`: keeps non-ASCII characters (Jinja's own escapes them and HTML-escapes `<>&'`)."""
    try:
        return json.dumps(
            value,
            ensure_ascii=False,
            indent=indent,
            separators=tuple(separators) if separators is not None else None,
            sort_keys=sort_keys,
        )
    except (TypeError, ValueError) as exc:
        raise jinja2.exceptions.TemplateError(f"tojson: {exc}") from None


def _budgeted_range(*args: int) -> range:
    """`range()` with a per-render budget, so nested loops cannot spin for minutes."""
    rng = range(*args)
    budget = _range_budget.get(None)
    if budget is not None:
        budget[0] -= len(rng)
        if budget[0] < 0:
            raise SecurityError("the template iterates too many times (range budget exhausted)")
    elif len(rng) > MAX_RANGE_ITEMS_PER_RENDER:
        raise SecurityError("range too big")
    return rng


class _GenerationExtension(jinja2.ext.Extension):
    """Accept HF's `{% generation %}…{% endgeneration %}` (marks assistant tokens for training) and render its body."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


class _ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, made strict: unsafe attribute access raises instead of rendering as ''."""

    intercepted_binops: ClassVar[frozenset[str]] = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:  # type: ignore[override]
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_POWER_EXPONENT:
                raise SecurityError("exponent too large")
            return left**right
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE_LENGTH:
                    raise SecurityError("sequence repetition too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_, left, right)


def _make_environment() -> _ChatTemplateEnvironment:
    env = _ChatTemplateEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", _GenerationExtension],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["range"] = _budgeted_range
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
    token = _range_budget.set([MAX_RANGE_ITEMS_PER_RENDER])
    try:
        compiled = _compile(template)
        parts: list[str] = []
        size = 0
        for piece in compiled.generate(context):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError("the rendered prompt is too large")
            parts.append(piece)
        return "".join(parts)
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside untrusted template code is the template's fault
        _fail(exc)
    finally:
        _range_budget.reset(token)


_TOOLS_RE = re.compile(r"\btools\b")


def template_supports_tools(template: str) -> bool:
    """Whether the template renders tool definitions (it refers to the `tools` variable)."""
    return bool(_TOOLS_RE.search(template))


def template_supports_thinking(template: str) -> bool:
    """Whether the model is a reasoning model whose template knows about thinking output."""
    return any(marker in template for marker in ("enable_thinking", "<think>", "reasoning_content"))
