"""Turn a conversation or a prompt into the text a model continues.

Shared by both dialects so that an Ollama chat and an OpenAI chat with the same
messages produce exactly the same prompt.

The `template` field of /api/generate takes Ollama (Go) templates only, as in
Ollama: request templates come from anyone with a key, and Jinja is a far
larger attack surface than the small Go interpreter. Jinja stays for model
templates (GGUF files, admin-made models), under the same render budget. A
request's own template gets a tenth of that budget: anyone can send one, and a
real one renders in well under a millisecond.
"""

from __future__ import annotations

from typing import Any

from flexi.prompt.gotemplate import is_go_template, render_go_template
from flexi.prompt.render_budget import MAX_STEPS, budget, render_timeout
from flexi.prompt.templates import CHATML_TEMPLATE, render_chat, template_supports_thinking, template_supports_tools
from flexi.engine.types import BadRequest
from flexi.store.store import ModelRecord


JINJA_REQUEST_TEMPLATE = (
    "template: only Ollama (Go) templates are accepted here, e.g. "
    "'{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}'; Jinja ({% ... %}) chat templates "
    "can only come with a model"
)

_JINJA_MARKERS = ("{%", "{#")

REQUEST_TEMPLATE_STEPS = MAX_STEPS // 10  # a request's own template: a few hundred steps are real use
REQUEST_TEMPLATE_SECONDS = 0.25


def looks_like_jinja(template: str) -> bool:
    """Jinja statements or comments: Go templates have neither (`{{/* */}}` is Go's comment)."""
    return any(marker in template for marker in _JINJA_MARKERS)


def model_template(record: ModelRecord) -> str:
    return record.template or record.info.chat_template or CHATML_TEMPLATE


def _remote(record: ModelRecord) -> bool:
    """A remote engine's model: it applies its own template, so its configured capabilities decide."""
    return record.info.architecture == "remote"


def supports_tools(record: ModelRecord) -> bool:
    if _remote(record):
        return "tools" in record.info.capabilities
    return template_supports_tools(model_template(record))


def supports_thinking(record: ModelRecord) -> bool:
    if _remote(record):
        return "thinking" in record.info.capabilities
    return template_supports_thinking(model_template(record))


def check_capabilities(record: ModelRecord, *, tools: Any = None, think: Any = None, images: Any = None,
                       suffix: str | None = None) -> None:
    """Refuse features the model cannot do with a 400, in Ollama's words."""
    if "completion" not in record.info.capabilities and "embedding" in record.info.capabilities:
        raise BadRequest(f'"{record.name}" does not support generate')
    if tools and not supports_tools(record):
        raise BadRequest(f'"{record.name}" does not support tools', param="tools")
    if think and not supports_thinking(record):
        raise BadRequest(f'"{record.name}" does not support thinking', param="think")
    if images and "vision" not in record.info.capabilities:
        raise BadRequest(f'"{record.name}" does not support images (it is a text-only model)', param="images")
    if suffix and "insert" not in record.info.capabilities:
        raise BadRequest(f'"{record.name}" does not support insert', param="suffix")


def render_messages(record: ModelRecord, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    think: bool | None = None) -> str:
    """Prompt for a chat: the model's (or the Modelfile's) template over all messages."""
    template = model_template(record)
    if record.system and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": record.system}, *messages]
    if is_go_template(template):
        return render_go_template(template, messages=messages, tools=tools, think=think)
    extra = {"enable_thinking": bool(think)} if think is not None else None
    return render_chat(template, messages, tools=tools, add_generation_prompt=True, extra=extra)


def render_generate(record: ModelRecord, prompt: str, *, system: str | None = None, template: str | None = None,
                    suffix: str | None = None, raw: bool = False, think: bool | None = None) -> str:
    """Prompt for /api/generate and /v1/completions-style requests."""
    if raw:
        return prompt
    if template:
        if looks_like_jinja(template):
            raise BadRequest(JINJA_REQUEST_TEMPLATE, param="template")
        with budget(REQUEST_TEMPLATE_STEPS, min(render_timeout(), REQUEST_TEMPLATE_SECONDS)):
            return render_go_template(template, system=system or record.system or "", prompt=prompt, suffix=suffix)
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return render_messages(record, messages, think=think)
