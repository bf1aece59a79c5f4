"""OpenAI-compatible API (/v1/*): translate to internal requests, stream SSE back.

Wire format follows OpenAI's API reference: chat completions, legacy text
completions, embeddings and the model list. Streams are Server-Sent Events
(`data: {json}\\n\\n`, ending with `data: [DONE]`); errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` (the app's exception handler
renders every EngineError raised here that way).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import string
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from flexi import i18n
from flexi.access.caller import Caller
from flexi.api import completion as gen
from flexi.api.logprobs import (
    MAX_LIST_SIZE,
    MAX_PROMPTS,
    LegacyLogprobs,
    content_entries,
    merge_parts,
    top_count,
)
from flexi.api.openai_types import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingsRequest,
    SamplingFields,
)
from flexi.api.wire import primed, sse, stream_error
from flexi.engine.types import (
    BadRequest,
    EngineError,
    GenerationStats,
    ModelNotFound,
    PromptLogprobs,
    StatusEvent,
    TextChunk,
    TokenLogprob,
)
from flexi.http.app_state import generation_of, state_of
from flexi.http.caller import caller_of
from flexi.http.errors import OPENAI_TYPES, parse_body
from flexi.service.generation import (
    ChatPrompt,
    Draft,
    EmbedDraft,
    GenerationService,
    Target,
    TextPrompt,
)
from flexi.service.options import ModelOptions
from flexi.store.store import ModelRecord

router = APIRouter()
SSE = "text/event-stream"


def _response_base(id_prefix: str, obj: str, model: str, record: ModelRecord) -> dict[str, Any]:
    """The fields every completion response and chunk carries (Moodle's OpenAI provider reads all of them)."""
    return {"id": _random_id(id_prefix), "object": obj, "created": int(time.time()), "model": model,
            "system_fingerprint": _fingerprint(record)}


def _status_comment(ev: StatusEvent) -> bytes:
    """Why nothing streams yet, as an SSE comment: OpenAI clients skip comments, Flexi's UI shows them."""
    text = ev.kind if ev.position is None else f"{ev.kind} position={ev.position}"
    return f": {text}\n\n".encode()
_ALPHABET = string.ascii_letters + string.digits
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_FINISH = {"stop": "stop", "length": "length"}  # internal "cancelled"/"error" never reach a client normally


def _random_id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _fingerprint(record: ModelRecord) -> str:
    return f"fp_flexi_{record.digest[:12]}"


def _require_model(service: GenerationService, caller: Caller, name: str) -> ModelRecord:
    try:
        return service.model(caller, name)
    except ModelNotFound as exc:
        exc.param = "model"  # type: ignore[attr-defined]
        raise


async def _target(service: GenerationService, caller: Caller, name: str) -> Target:
    try:
        return await service.target(caller, name)
    except ModelNotFound as exc:
        exc.param = "model"  # type: ignore[attr-defined]
        raise


def _finish_reason(stats: GenerationStats) -> str:
    return _FINISH.get(stats.finish_reason, "stop")


def _usage(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


def _error_event(exc: EngineError) -> bytes:
    return sse({"error": {"message": exc.message, "type": OPENAI_TYPES.get(exc.status, "server_error"),
                          "param": getattr(exc, "param", None), "code": exc.code}})


# --- request translation ----------------------------------------------------------------
def _refuse_unsupported(body: SamplingFields) -> None:
    if body.n > 1:
        raise BadRequest("n > 1 is not supported", param="n")


def _options(body: SamplingFields, max_tokens: int | None) -> ModelOptions:
    """OpenAI's top-level sampling fields → Ollama-named options (unset fields keep the model's defaults)."""
    return ModelOptions(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop,
        num_predict=max_tokens,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        top_k=body.top_k,
        min_p=body.min_p,
        repeat_penalty=body.repeat_penalty,
        ignore_eos=body.ignore_eos,
    )


def _image(part: dict[str, Any]) -> str | None:
    """An image part's base64 data (Flexi's image shape, Ollama's), or None for anything but a data: URL
    (Flexi fetches no URLs for anyone)."""
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        return url.split(";base64,", 1)[1]
    return None


def _content_text(content: Any, i: int) -> tuple[str, list[str | None]]:
    """Message content (string or list of parts) → (text, its images: base64 data, None for a URL)."""
    where, param = f"messages[{i}]", f"messages.{i}"
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str | None] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "input_text", "refusal"):
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise BadRequest(f"{where}.content[{j}].text must be a string", param=f"{param}.content.{j}.text")
            texts.append(text)
        elif kind in ("image_url", "input_image"):
            images.append(_image(part))
        else:
            raise BadRequest(f"{where}.content[{j}]: content parts of type {kind!r} are not supported",
                             param=f"{param}.content.{j}.type")
    return "\n".join(texts), images


def _arguments(raw: str | dict[str, Any], param: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadRequest("tool call arguments must be a JSON object encoded as a string", param=param) from None
    if not isinstance(value, dict):
        raise BadRequest("tool call arguments must be a JSON object encoded as a string", param=param)
    return value


def _chat_messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], bool]:
    """OpenAI messages → the template's message dicts (Ollama's shape), plus whether any has images."""
    out: list[dict[str, Any]] = []
    has_images = False
    call_names: dict[str, str] = {}  # tool_call_id → function name, so tool results can name their tool
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = _ROLES.get(m.role)
        if role is None:
            raise BadRequest(f"{where}.role {m.role!r} is not one of system, developer, user, assistant, tool",
                             param=f"messages.{i}.role")
        text, images = _content_text(m.content, i)
        has_images = has_images or bool(images)
        msg: dict[str, Any] = {"role": role, "content": text}
        if images:  # for engines that take them (remote ones with vision); a URL stays None and is refused
            msg["images"] = images
        if m.tool_calls:
            if role != "assistant":
                raise BadRequest(f"{where}: only assistant messages can have tool_calls", param=f"messages.{i}.tool_calls")
            calls = []
            for j, c in enumerate(m.tool_calls):
                args = _arguments(c.function.arguments, f"messages.{i}.tool_calls.{j}.function.arguments")
                call: dict[str, Any] = {"type": "function", "function": {"name": c.function.name, "arguments": args}}
                if c.id:
                    call["id"] = c.id
                    call_names[c.id] = c.function.name
                calls.append(call)
            msg["tool_calls"] = calls
        if role == "tool":
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
            name = m.name or call_names.get(m.tool_call_id or "")
            if name:
                msg["name"] = name
        out.append(msg)
    return out, has_images


def _tools(body: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """The tools to offer the model, honouring tool_choice ("none" offers none; a named function only that one)."""
    tools = body.tools or None
    if tools is None:
        return None
    names = []
    for i, t in enumerate(tools):
        fn = t.get("function")
        if t.get("type", "function") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f'tools[{i}] must be {{"type": "function", "function": {{"name": ..., "parameters": ...}}}}',
                             param=f"tools.{i}")
        names.append(fn["name"])
    choice = body.tool_choice
    if choice is None or choice in ("auto", "required"):
        return tools
    if choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        if wanted not in names:
            raise BadRequest(f"tool_choice names function {wanted!r}, which is not in tools", param="tool_choice")
        return [t for t in tools if t["function"]["name"] == wanted]
    raise BadRequest('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
                     param="tool_choice")


def _tool_choice(body: ChatCompletionRequest) -> str | None:
    """Whether the model must call a tool: "required", a function's name, or None (it decides). `_tools`
    has already checked the value and offers a named function alone."""
    choice = body.tool_choice
    if choice == "required":
        return "required"
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and body.tools:
        return str(choice["function"].get("name"))
    return None


def _response_format(value: Any) -> Any:
    """OpenAI's response_format → the internal format: None, "json" or a JSON schema dict."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise BadRequest('response_format.json_schema must be an object {"name": ..., "schema": {...}}',
                             param="response_format")
        schema = spec.get("schema")
        if schema is None:
            return "json"
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be a JSON schema object", param="response_format")
        return schema
    raise BadRequest('response_format.type must be "text", "json_object" or "json_schema"', param="response_format")


async def _start(service: GenerationService, target: Target, draft: Draft) -> AsyncIterator[Any]:
    try:
        return await primed(await service.run(target, draft))
    except BadRequest as exc:
        if exc.param == "images":  # name the field the OpenAI client actually sent
            exc.param = "messages"
        raise


def _tool_calls_out(calls: list[dict[str, Any]], streaming: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        item: dict[str, Any] = {"id": c.get("id") or _random_id("call_"), "type": "function",
                                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
        out.append({"index": i, **item} if streaming else item)
    return out


# --- chat completions -------------------------------------------------------------------
@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await chat_completion_response(request, await parse_body(request, ChatCompletionRequest))


async def chat_completion_response(request: Request, body: ChatCompletionRequest) -> Response:
    """A parsed chat completion request → its answer (JSON or SSE); Azure's deployment route comes here too."""
    _refuse_unsupported(body)
    top = top_count(body.logprobs, body.top_logprobs)
    service = generation_of(request)
    target = await _target(service, caller_of(request), body.model)
    record = target.record
    if not body.messages:
        raise BadRequest("messages must contain at least one message", param="messages")
    service.check_message_count(len(body.messages))
    tools = _tools(body)
    fmt = _response_format(body.response_format)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens

    grounding = target.grounding  # a course assistant with documents: passages in, citations out

    def prompt() -> ChatPrompt:  # content parts are converted after admission (over quota: 429 first)
        messages, has_images = _chat_messages(body.messages)
        if has_images and "vision" in record.info.capabilities and \
                any(None in m.get("images", []) for m in messages):
            raise BadRequest("images must be sent as data: URLs (base64); Flexi does not fetch image URLs",
                             param="messages")
        return ChatPrompt(target.messages(messages), tools=tools, has_images=has_images, tool_choice=_tool_choice(body),
                          augment=grounding.augment if grounding is not None else None)

    draft = Draft(prompt, options=target.merged_options(_options(body, max_tokens)),
                  body=body, fmt=fmt, format_param="response_format", keep_alive=body.keep_alive, end_user=body.user,
                  body_priority=body.priority, logprobs=top)
    events = await _start(service, target, draft)

    base = _response_base("chatcmpl-", "chat.completion", body.model, record)

    def logprobs_of(entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        return None if top is None else {"content": content_entries(entries or []), "refusal": None}

    if not body.stream:
        done = await gen.collect_while_connected(request, events)
        content, calls = gen.answer_tool_calls(done, tools)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            message["tool_calls"] = _tool_calls_out(calls)
            message["content"] = content or None
        if grounding is not None:
            message["citations"] = grounding.citations(done.text)
        finish = "tool_calls" if calls else _finish_reason(done.stats)
        return JSONResponse({**base,
                             "choices": [{"index": 0, "message": message, "logprobs": logprobs_of(done.logprobs),
                                          "finish_reason": finish}],
                             "usage": _usage(done.stats)})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    base["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: dict[str, Any] | None = None) -> bytes:
        out: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                                    "finish_reason": finish}]}
        if include_usage:
            out["usage"] = None
        return sse(out)

    def ending(stats: GenerationStats, finish: str, text: str) -> list[bytes]:
        out = [chunk({"citations": grounding.citations(text)} if grounding is not None else {}, finish)]
        if include_usage:
            out.append(sse({**base, "choices": [], "usage": _usage(stats)}))
        return out

    async def body_stream() -> AsyncIterator[bytes]:
        # Iterating the manager's generator here means a client disconnect cancels this
        # coroutine and, through the generator's cleanup, the sequence in the runner.
        try:
            yield chunk({"role": "assistant", "content": ""})
            if tools:
                # Tool calls are parsed from the whole answer, then sent as one delta.
                done = await gen.collect(events)
                content, calls = gen.answer_tool_calls(done, tools)
                if content or (top is not None and done.logprobs):
                    yield chunk({"content": content}, logprobs=logprobs_of(done.logprobs) if top is not None else None)
                if calls:
                    yield chunk({"tool_calls": _tool_calls_out(calls, streaming=True)})
                for part in ending(done.stats, "tool_calls" if calls else _finish_reason(done.stats), done.text):
                    yield part
            else:
                said: list[str] = []
                async for ev in events:
                    if isinstance(ev, StatusEvent):
                        yield _status_comment(ev)
                    elif isinstance(ev, TextChunk):
                        if ev.logprobs is not None and top is not None:
                            said.append(ev.text)
                            yield chunk({"content": ev.text}, logprobs=logprobs_of(ev.logprobs))
                        elif ev.text:
                            said.append(ev.text)
                            yield chunk({"content": ev.text})
                    elif isinstance(ev, GenerationStats):
                        for part in ending(ev, _finish_reason(ev), "".join(said)):
                            yield part
        except Exception as exc:
            yield _error_event(stream_error(exc))
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield sse("[DONE]")

    return StreamingResponse(body_stream(), media_type=SSE, headers={"Cache-Control": "no-cache"})


# --- text completions -------------------------------------------------------------------
Prompt = str | list[int]  # a text, or token ids


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _prompts(prompt: Any) -> list[Prompt]:
    """OpenAI's prompt shapes: a string, a list of strings, a list of token ids, or a list of such lists;
    each item one choice (`MAX_PROMPTS` at most)."""
    if prompt is None:
        raise BadRequest("prompt is required", param="prompt")
    if isinstance(prompt, str):
        prompt = [prompt]
    if not isinstance(prompt, list):
        raise BadRequest("prompt must be a string, a list of strings, a list of token ids or a list of lists of "
                         "token ids", param="prompt")
    if not prompt:
        raise BadRequest("prompt must not be empty", param="prompt")
    items: list[Prompt]
    if all(isinstance(p, str) for p in prompt):
        items = list(prompt)
    elif all(_is_token(p) for p in prompt):
        items = [list(prompt)]
    elif all(isinstance(p, list) and all(_is_token(t) for t in p) for p in prompt):
        items = [list(p) for p in prompt]
    else:
        raise BadRequest("prompt must be a string, a list of strings, a list of token ids or a list of lists of "
                         "token ids", param="prompt")
    if len(items) > MAX_PROMPTS:
        raise BadRequest(f"too many prompts: {len(items)}, at most {MAX_PROMPTS} are allowed per request",
                         param="prompt")
    if len(items) > 1 and sum(len(item) for item in items) > MAX_LIST_SIZE:  # characters or token ids
        raise BadRequest(f"the prompts of one request are together larger than {MAX_LIST_SIZE} characters (or token "
                         "ids): send them in several requests", param="prompt")
    for i, item in enumerate(items):
        if isinstance(item, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in item):
            raise BadRequest(f"prompt[{i}] contains a lone surrogate (not valid Unicode text)", param="prompt")
        if isinstance(item, list) and not item:
            raise BadRequest(f"prompt[{i}] is an empty list of token ids", param="prompt")
        if isinstance(item, list) and any(t < 0 for t in item):
            raise BadRequest(f"prompt[{i}] contains a negative token id", param="prompt")
    return items


def _check_completion(body: CompletionRequest, prompts: list[Prompt]) -> None:
    """What the legacy endpoint cannot do, or what makes no sense together: refused before anything runs."""
    _refuse_unsupported(body)
    if body.best_of is not None and body.best_of > 1:
        raise BadRequest("best_of > 1 is not supported", param="best_of")
    if body.max_tokens == 0 and not body.echo:
        raise BadRequest("max_tokens 0 generates nothing: it needs echo (to return or score the prompt)",
                         param="max_tokens")
    if body.echo and body.logprobs is not None and body.suffix:
        raise BadRequest("echo with logprobs scores the prompt as sent; it cannot be combined with suffix", param="suffix")
    if body.suffix and any(isinstance(p, list) for p in prompts):
        raise BadRequest("suffix needs the prompt as text", param="suffix")


def _legacy_usage(stats: list[GenerationStats]) -> dict[str, Any]:
    prompt = sum(s.prompt_tokens for s in stats)
    completion = sum(s.completion_tokens for s in stats)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(s.cached_tokens for s in stats)}}


def _pieces_text(entries: list[TokenLogprob]) -> str:
    return b"".join(e.piece for e in entries).decode("utf-8", "replace")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await completion_response(request, await parse_body(request, CompletionRequest))


async def completion_response(request: Request, body: CompletionRequest) -> Response:
    """A parsed text completion request → its answer (JSON or SSE); Azure's deployment route comes here too.

    Every prompt of a list is a generation of its own (admitted, queued and billed like a single one),
    run one after the other; choice i answers prompt i. With `echo` and `logprobs` the runner scores the
    prompt (every token's logprob given those before it; the first has none) — lm-evaluation-harness's
    loglikelihood and perplexity ask exactly this, often with max_tokens 0 or 1."""
    prompts = _prompts(body.prompt)
    _check_completion(body, prompts)
    service = generation_of(request)
    target = await _target(service, caller_of(request), body.model)
    record = target.record
    if target.builds_prompt and any(isinstance(p, list) for p in prompts):
        raise BadRequest("a prompt template builds its own prompt: send its parameters as text", param="prompt")
    wants_logprobs = body.logprobs is not None
    options = target.merged_options(_options(body, body.max_tokens))

    def draft(item: Prompt) -> Draft:
        # the prompt is scored for echo with logprobs, and for echo of token ids (their text is the pieces')
        score = body.echo and (wants_logprobs or isinstance(item, list))
        if isinstance(item, list):
            spec = TextPrompt("", raw=True)
        elif target.builds_prompt:  # a prompt template: the prompt carries its parameters, the template renders
            text, system = target.text_prompt(item, None)
            spec = TextPrompt(text, system=system)
        else:
            spec = TextPrompt(item, suffix=body.suffix or None, raw=True)
        return Draft(spec, options=options, body=body, keep_alive=body.keep_alive, end_user=body.user,
                     body_priority=body.priority, prefix_tokens=item if isinstance(item, list) else [],
                     logprobs=body.logprobs, prompt_logprobs=score)

    async def start(i: int) -> AsyncIterator[Any]:
        return await _start(service, target, draft(prompts[i]))

    first = await start(0)  # errors before any output (bad input, quota, load) become an HTTP status
    base = _response_base("cmpl-", "text_completion", body.model, record)

    def prompt_text(item: Prompt) -> str | None:
        """The echoed prompt text its scored tokens were tokenized from (offsets align with it), if it is one."""
        return item if isinstance(item, str) and not target.builds_prompt and not body.suffix else None

    def logprobs_of(item: Prompt, done: gen.Completion) -> tuple[str, dict[str, Any] | None]:
        """(the echoed prompt's text, the choice's logprobs object)."""
        echoed = ""
        if body.echo:
            echoed = item if isinstance(item, str) else _pieces_text(done.prompt_logprobs or [])
        if not wants_logprobs:
            return echoed, None
        builder = LegacyLogprobs()
        parts = [builder.part(done.prompt_logprobs or [], prompt_text(item))] if body.echo else []
        parts.append(builder.part(done.logprobs or []))
        return echoed, merge_parts(parts)

    if not body.stream:
        choices: list[dict[str, Any]] = []
        stats: list[GenerationStats] = []
        for i, item in enumerate(prompts):
            events = first if i == 0 else await start(i)
            done = await gen.collect_while_connected(request, events)
            echoed, lp = logprobs_of(item, done)
            choices.append({"text": echoed + done.text, "index": i, "logprobs": lp,
                            "finish_reason": _finish_reason(done.stats)})
            stats.append(done.stats)
        return JSONResponse({**base, "choices": choices, "usage": _legacy_usage(stats)})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(index: int, text: str, finish: str | None = None, logprobs: dict[str, Any] | None = None) -> bytes:
        out: dict[str, Any] = {**base, "choices": [{"text": text, "index": index, "logprobs": logprobs,
                                                    "finish_reason": finish}]}
        if include_usage:
            out["usage"] = None
        return sse(out)

    async def one(index: int, item: Prompt, events: AsyncIterator[Any], stats: list[GenerationStats]
                  ) -> AsyncIterator[bytes]:
        builder = LegacyLogprobs()
        try:
            if body.echo and isinstance(item, str) and not (wants_logprobs and item):
                if item:
                    yield chunk(index, item)
                builder.skip(item)
            async for ev in events:
                if isinstance(ev, StatusEvent):
                    yield _status_comment(ev)
                elif isinstance(ev, PromptLogprobs):
                    text = item if isinstance(item, str) else _pieces_text(ev.logprobs)
                    yield chunk(index, text,
                                logprobs=builder.part(ev.logprobs, prompt_text(item)) if wants_logprobs else None)
                elif isinstance(ev, TextChunk):
                    if ev.logprobs is not None and wants_logprobs:
                        yield chunk(index, ev.text, logprobs=builder.part(ev.logprobs))
                    elif ev.text:
                        yield chunk(index, ev.text)
                elif isinstance(ev, GenerationStats):
                    stats.append(ev)
                    yield chunk(index, "", _finish_reason(ev))
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def body_stream() -> AsyncIterator[bytes]:
        stats: list[GenerationStats] = []
        try:
            for i, item in enumerate(prompts):
                async for part in one(i, item, first if i == 0 else await start(i), stats):
                    yield part
            if include_usage:
                yield sse({**base, "choices": [], "usage": _legacy_usage(stats)})
        except Exception as exc:
            yield _error_event(stream_error(exc))
        finally:
            await first.aclose()  # type: ignore[attr-defined]  # a no-op once it ran; frees it if it never did
        yield sse("[DONE]")

    return StreamingResponse(body_stream(), media_type=SSE, headers={"Cache-Control": "no-cache"})


# --- embeddings ---------------------------------------------------------------------------
def _embedding_inputs(value: Any) -> list[str]:
    if value is None:
        raise BadRequest("input is required", param="input")
    if isinstance(value, str):
        inputs = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        inputs = list(value)
    elif isinstance(value, list) and not value:
        raise BadRequest("input must not be empty", param="input")
    elif isinstance(value, list) and (all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                                      or all(isinstance(v, list) for v in value)):
        raise BadRequest("token arrays are not supported as input yet; send text", param="input")
    else:
        raise BadRequest("input must be a string or a list of strings", param="input")
    for i, text in enumerate(inputs):
        if not text:
            raise BadRequest(f"input[{i}] is empty; every input must contain text", param="input")
    return inputs


def _base64_floats(vec: list[float]) -> str:
    """Little-endian float32 bytes, base64 — what OpenAI's `encoding_format: "base64"` returns."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await embeddings_response(request, await parse_body(request, EmbeddingsRequest))


async def embeddings_response(request: Request, body: EmbeddingsRequest) -> Response:
    """A parsed embeddings request → its vectors; Azure's deployment route comes here too."""
    if body.encoding_format not in ("float", "base64"):
        raise BadRequest('encoding_format must be "float" or "base64"', param="encoding_format")
    inputs = _embedding_inputs(body.input)
    caller, service = caller_of(request), generation_of(request)
    record = _require_model(service, caller, body.model)
    result = await service.embed(caller, record, EmbedDraft(inputs, truncate=body.truncate, normalize=True,
                                                            keep_alive=body.keep_alive, end_user=body.user))
    encode: Callable[[list[float]], Any] = _base64_floats if body.encoding_format == "base64" else (lambda v: v)
    data = [{"object": "embedding", "index": i, "embedding": encode(gen.truncate_embedding(vec, body.dimensions))}
            for i, vec in enumerate(result.embeddings)]
    return JSONResponse({"object": "list", "data": data, "model": body.model,
                         "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}})


# --- images -------------------------------------------------------------------------------
def images_not_supported(request: Request) -> EngineError:
    """Flexi generates no images: Moodle's image action (and any client) gets a message it shows as it is."""
    return EngineError(i18n.text("images_not_supported", caller_of(request).locale), 400, "unsupported_endpoint")


@router.post("/v1/images/generations")
async def image_generations(request: Request) -> Response:
    raise images_not_supported(request)


# --- models -------------------------------------------------------------------------------
def _model_object(record: ModelRecord, name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": name or record.name, "object": "model", "created": int(record.modified_at.timestamp()),
                           "owned_by": record.model_name.namespace or "library"}
    if record.external:  # Flexi extension (clients ignore it): prompts to this model leave the campus
        out["external"] = True
    return out


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    records = await asyncio.to_thread(state_of(request).store.list)
    listed = await generation_of(request).listing(caller_of(request), records)
    return {"object": "list", "data": [_model_object(r, name) for name, r in listed]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    service = generation_of(request)
    try:
        record = await asyncio.to_thread(service.model, caller_of(request), model_id)
    except BadRequest:  # not even a valid name: certainly not a model we have
        exc = ModelNotFound(model_id)
        exc.param = "model"  # type: ignore[attr-defined]
        raise exc from None
    except ModelNotFound as exc:
        exc.param = "model"  # type: ignore[attr-defined]
        raise
    return _model_object(record, model_id if service.alias_of(model_id) is not None else None)
