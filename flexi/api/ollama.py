"""Ollama's REST API (/api/*): translate to internal requests, stream NDJSON back.

Wire format follows ollama/docs/api.md; durations are nanoseconds, `created_at`
is RFC 3339 with nanoseconds, streamed errors are `{"error": "..."}` lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from flexi import __version__
from flexi.access.caller import Caller
from flexi.api import completion as gen
from flexi.http.app_state import generation_of, state_of
from flexi.http.caller import caller_of
from flexi.http.errors import parse_body
from flexi.service.options import model_parameters
from flexi.api.ollama_types import (
    ChatRequest,
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    PullRequest,
    ShowRequest,
)
from flexi.api.logprobs import content_entries, top_count
from flexi.api.wire import ndjson, primed, rfc3339_nano, stream_error
from flexi.engine.types import BadRequest, EngineError, GenerationStats, StatusEvent, TextChunk
from flexi.service.generation import ChatPrompt, Draft, EmbedDraft, Grounding, Target, TextPrompt
from flexi.store.blobs import BlobWriter, validate_digest
from flexi.store.names import parse_model_name
from flexi.store.pull import pull_model
from flexi.store.store import ModelRecord

log = logging.getLogger("flexi.api.ollama")
router = APIRouter()
OLLAMA_API_VERSION = "0.13.0"  # the Ollama API level Flexi implements; clients gate features on it
NDJSON = "application/x-ndjson"


def _model_entry(record: ModelRecord, name: str | None = None) -> dict[str, Any]:
    name = name or record.name
    entry: dict[str, Any] = {"name": name, "model": name, "modified_at": record.modified_at.isoformat(),
                             "size": record.size, "digest": record.digest, "details": record.details}
    if record.external:  # Flexi extension (clients ignore it): prompts to this model leave the campus
        entry["external"] = True
    return entry


def _status_fields(ev: StatusEvent) -> dict[str, Any]:
    """Flexi extension on otherwise empty chunks: why nothing streams yet (clients ignore unknown fields)."""
    out: dict[str, Any] = {"status": ev.kind}
    if ev.position is not None:
        out["queue_position"] = ev.position
    return out


def _stats_fields(stats: GenerationStats, t0: int) -> dict[str, Any]:
    return {
        "done_reason": stats.finish_reason,
        "total_duration": time.perf_counter_ns() - t0,
        "load_duration": stats.load_ns,
        "prompt_eval_count": stats.prompt_tokens,
        "prompt_eval_duration": stats.prompt_eval_ns,
        "eval_count": stats.completion_tokens,
        "eval_duration": stats.eval_ns,
    }


# --- meta ------------------------------------------------------------------------
@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION, "flexi_version": __version__}


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> dict[str, Any]:
    records = await asyncio.to_thread(state_of(request).store.list)
    listed = await generation_of(request).listing(caller_of(request), records)
    return {"models": [_model_entry(r, name) for name, r in listed]}


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    models = []
    visible = {r.name for r in generation_of(request).visible(caller_of(request), [e.record for e in state_of(request).manager.ps()])}
    for entry in state_of(request).manager.ps():
        if entry.record.name not in visible:
            continue
        expires = entry.expires_wall()
        if expires is None:
            expires = datetime.now(timezone.utc).astimezone() + timedelta(days=365 * 290)
        models.append({**_model_entry(entry.record), "size": entry.size, "expires_at": expires.isoformat(),
                       "size_vram": 0, "context_length": entry.num_ctx})
    return {"models": models}


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await parse_body(request, ShowRequest)
    caller = caller_of(request)
    record = generation_of(request).model(caller, body.model)
    params = "\n".join(f"{k:<30} {v_}" for k, v in record.parameters.items()
                       for v_ in (v if isinstance(v, list) else [v]))
    template = record.template or record.info.chat_template or ""
    out: dict[str, Any] = {
        "modelfile": _modelfile(record, reveal_path=caller.principal.is_admin or caller.principal.local),
        "parameters": params,
        "template": template,
        "details": record.details,
        "model_info": record.info.model_info,
        "capabilities": record.info.capabilities,
        "modified_at": record.modified_at.isoformat(),
    }
    if record.license or record.info.license:
        out["license"] = record.license or record.info.license
    if record.system:
        out["system"] = record.system
    return out


def _modelfile(record: ModelRecord, reveal_path: bool = True) -> str:
    """The Modelfile; the server's file path only for admins (others see the model's name)."""
    lines = ["# Modelfile generated by \"flexi show\"", f"FROM {record.model_path if reveal_path else record.name}"]
    template = record.template or record.info.chat_template
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    if record.system:
        lines.append(f'SYSTEM """{record.system}"""')
    for k, v in record.parameters.items():
        for item in v if isinstance(v, list) else [v]:
            lines.append(f"PARAMETER {k} {item}")
    return "\n".join(lines) + "\n"


# --- generation --------------------------------------------------------------------
async def _load_only(target: Target, request: Request, keep_alive: Any, t0: int, chat: bool) -> JSONResponse:
    """Empty prompt: just load (or, with keep_alive 0, unload) the model, like Ollama."""
    reason, load_ns = await generation_of(request).load_only(target.caller, target.record, keep_alive)
    body: dict[str, Any] = {"model": target.name, "created_at": rfc3339_nano(), "done": True, "done_reason": reason}
    if chat:
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    if reason == "load":
        body["total_duration"] = time.perf_counter_ns() - t0
        body["load_duration"] = load_ns
    return JSONResponse(body)


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    t0 = time.perf_counter_ns()
    body = await parse_body(request, GenerateRequest)
    service = generation_of(request)
    target = await service.target(caller_of(request), body.model)
    shown = target.name
    top = top_count(body.logprobs, body.top_logprobs)
    if not body.prompt and not body.context and not body.suffix:
        return await _load_only(target, request, body.keep_alive, t0, chat=False)
    text, system = target.text_prompt(body.prompt, body.system)
    fixed = target.builds_prompt  # a prompt template: the prompt is its own, the client's text only data
    prompt = TextPrompt(text, system=system, template=None if fixed else body.template,
                        suffix=None if fixed else body.suffix, raw=body.raw and not fixed,
                        think=body.think, has_images=bool(body.images))
    draft = Draft(prompt, options=target.merged_options(body.options), body=body, fmt=body.format, keep_alive=body.keep_alive,
                  prefix_tokens=[] if fixed else list(body.context or []), return_tokens=not body.raw,
                  end_user=body.user, logprobs=top)
    events = await primed(await service.run(target, draft))
    if not body.stream or body.think:
        # Thinking is split from the whole answer (like /api/chat); streamed as one chunk then.
        done = await gen.collect_while_connected(request, events)
        thinking, text = gen.answer_thinking(done, done.text) if body.think else ("", done.text)
        out = {"model": shown, "created_at": rfc3339_nano(), "response": text, "done": True,
               **_stats_fields(done.stats, t0)}
        if thinking:
            out["thinking"] = thinking
        if top is not None:
            out["logprobs"] = content_entries(done.logprobs or [])
        if done.stats.tokens is not None:
            out["context"] = done.stats.tokens
        if not body.stream:
            return JSONResponse(out)

        async def once() -> AsyncIterator[bytes]:
            first = {"model": shown, "created_at": out["created_at"], "response": text, "done": False}
            if thinking:
                first["thinking"] = thinking
            if top is not None:
                first["logprobs"] = out["logprobs"]
            yield ndjson(first)
            yield ndjson({k: v for k, v in out.items() if k not in ("thinking", "logprobs")} | {"response": ""})

        return StreamingResponse(once(), media_type=NDJSON)

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for ev in events:
                if isinstance(ev, StatusEvent):
                    yield ndjson({"model": shown, "created_at": rfc3339_nano(), "response": "", "done": False,
                                  **_status_fields(ev)})
                elif isinstance(ev, TextChunk):
                    line: dict[str, Any] = {"model": shown, "created_at": rfc3339_nano(), "response": ev.text,
                                            "done": False}
                    if ev.logprobs is not None and top is not None:
                        line["logprobs"] = content_entries(ev.logprobs)
                    yield ndjson(line)
                else:
                    final = {"model": shown, "created_at": rfc3339_nano(), "response": "", "done": True,
                             **_stats_fields(ev, t0)}
                    if ev.tokens is not None:
                        final["context"] = ev.tokens
                    yield ndjson(final)
        except Exception as exc:
            yield ndjson({"error": stream_error(exc).message})

    return StreamingResponse(lines(), media_type=NDJSON)


def _chat_messages(body: ChatRequest) -> list[dict[str, Any]]:
    out = []
    for m in body.messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            msg["tool_calls"] = [{"type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
                                 for c in m.tool_calls]
        if m.tool_name:
            msg["name"] = m.tool_name
        if m.images:  # for engines that take them (remote ones with vision)
            msg["images"] = list(m.images)
        out.append(msg)
    return out


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    t0 = time.perf_counter_ns()
    body = await parse_body(request, ChatRequest)
    return await chat_response(request, body, t0)


async def chat_response(request: Request, body: ChatRequest, t0: int, caller: Caller | None = None,
                        grounding: Grounding | None = None) -> Response:
    """Answer an already parsed chat request exactly like /api/chat (NDJSON stream or JSON); course
    assistants (flexi/campus/assistants.py) build their ChatRequest and come here too, with their own
    caller (billing their course) and their documents (`grounding`): the passages enter the prompt as
    quoted material and the final chunk carries `citations`."""
    caller, service = caller or caller_of(request), generation_of(request)
    service.check_message_count(len(body.messages))  # assistants too: FLEXI_MAX_MESSAGES bounds every chat
    target = await service.target(caller, body.model)
    shown = target.name
    top = top_count(body.logprobs, body.top_logprobs)
    if not body.messages:
        return await _load_only(target, request, body.keep_alive, t0, chat=True)
    tools = body.tools or None
    grounding = grounding or target.grounding
    prompt = ChatPrompt(target.messages(_chat_messages(body)), tools=tools, think=body.think,
                        has_images=any(m.images for m in body.messages),
                        augment=grounding.augment if grounding is not None else None)
    draft = Draft(prompt, options=target.merged_options(body.options), body=body, fmt=body.format,
                  keep_alive=body.keep_alive, end_user=body.user, logprobs=top)
    events = await primed(await service.run(target, draft))
    want_thinking = bool(body.think)

    def message(done: gen.Completion, text: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if want_thinking:
            thinking, msg["content"] = gen.answer_thinking(done, text)
            if thinking:
                msg["thinking"] = thinking
        if calls:
            msg["tool_calls"] = [{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
        return msg

    if not body.stream or tools or want_thinking:
        # Tool calls and thinking are parsed from the whole answer; streamed as one chunk then.
        done = await gen.collect_while_connected(request, events)
        content, calls = gen.answer_tool_calls(done, tools)
        final = {"model": shown, "created_at": rfc3339_nano(), "message": message(done, content, calls), "done": True,
                 **_stats_fields(done.stats, t0)}
        if grounding is not None:
            final["citations"] = grounding.citations(done.text)
        if top is not None:
            final["logprobs"] = content_entries(done.logprobs or [])
        if not body.stream:
            return JSONResponse(final)

        async def once() -> AsyncIterator[bytes]:
            first = {"model": shown, "created_at": final["created_at"], "message": final["message"], "done": False}
            if top is not None:
                first["logprobs"] = final["logprobs"]
            yield ndjson(first)
            yield ndjson({k: v for k, v in final.items() if k != "logprobs"} | {"message": {"role": "assistant", "content": ""}})

        return StreamingResponse(once(), media_type=NDJSON)

    async def lines() -> AsyncIterator[bytes]:
        said: list[str] = []
        try:
            async for ev in events:
                if isinstance(ev, StatusEvent):
                    yield ndjson({"model": shown, "created_at": rfc3339_nano(),
                                  "message": {"role": "assistant", "content": ""}, "done": False, **_status_fields(ev)})
                elif isinstance(ev, TextChunk):
                    said.append(ev.text)
                    line: dict[str, Any] = {"model": shown, "created_at": rfc3339_nano(),
                                            "message": {"role": "assistant", "content": ev.text}, "done": False}
                    if ev.logprobs is not None and top is not None:
                        line["logprobs"] = content_entries(ev.logprobs)
                    yield ndjson(line)
                else:
                    last: dict[str, Any] = {"model": shown, "created_at": rfc3339_nano(),
                                            "message": {"role": "assistant", "content": ""}, "done": True,
                                            **_stats_fields(ev, t0)}
                    if grounding is not None:
                        last["citations"] = grounding.citations("".join(said))
                    yield ndjson(last)
        except Exception as exc:
            yield ndjson({"error": stream_error(exc).message})

    return StreamingResponse(lines(), media_type=NDJSON)


# --- embeddings ----------------------------------------------------------------------
@router.post("/api/embed")
async def embed(request: Request) -> dict[str, Any]:
    t0 = time.perf_counter_ns()
    body = await parse_body(request, EmbedRequest)
    caller, service = caller_of(request), generation_of(request)
    record = service.model(caller, body.model)
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    if not inputs:
        return {"model": record.name, "embeddings": []}
    opts = body.options
    result = await service.embed(caller, record, EmbedDraft(inputs, truncate=body.truncate, normalize=True,
                                                            num_ctx=opts.num_ctx if opts else None,
                                                            keep_alive=body.keep_alive, end_user=body.user))
    vectors = result.embeddings
    if body.dimensions:
        vectors = [gen.truncate_embedding(v, body.dimensions) for v in vectors]
    return {"model": record.name, "embeddings": vectors, "total_duration": time.perf_counter_ns() - t0,
            "load_duration": result.load_ns, "prompt_eval_count": result.prompt_tokens}


@router.post("/api/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    body = await parse_body(request, EmbeddingsRequest)
    caller, service = caller_of(request), generation_of(request)
    record = service.model(caller, body.model)
    if not body.prompt:
        return {"embedding": []}
    opts = body.options
    result = await service.embed(caller, record, EmbedDraft([body.prompt], normalize=False,
                                                            num_ctx=opts.num_ctx if opts else None,
                                                            keep_alive=body.keep_alive))
    return {"embedding": result.embeddings[0]}


# --- model management ----------------------------------------------------------------
async def _progress_response(stream: bool, work: Any) -> Response:
    """Run `work(emit)` and stream its progress dicts as NDJSON (or wait, when stream is false)."""
    if not stream:
        await work(None)
        return JSONResponse({"status": "success"})
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def emit(event: dict[str, Any]) -> None:
        await queue.put(event)

    async def run() -> None:
        try:
            await work(emit)
        except EngineError as exc:
            await queue.put({"error": exc.message})
        except Exception:
            log.exception("model operation failed")
            await queue.put({"error": "internal error while processing the model; see the server log"})
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())

    async def lines() -> AsyncIterator[bytes]:
        try:
            while (event := await queue.get()) is not None:
                yield ndjson(event)
        finally:
            if not task.done():
                task.cancel()

    return StreamingResponse(lines(), media_type=NDJSON)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    body = await parse_body(request, PullRequest)
    if not body.model:
        raise BadRequest("model is required", param="model")
    if not body.model.lower().startswith(("http://", "https://")):
        parse_model_name(body.model)  # a bad name is a 400 before any streaming starts
    state = state_of(request)

    async def work(emit: Any) -> None:
        await pull_model(state.store, body.model, state.settings, progress=emit, insecure=body.insecure)

    return await _progress_response(body.stream, work)


@router.post("/api/create")
async def create(request: Request) -> Response:
    body = await parse_body(request, CreateRequest)
    state = state_of(request)
    if not body.model:
        raise BadRequest("model is required", param="model")
    parse_model_name(body.model)
    if body.quantize:
        raise BadRequest("quantizing models is not supported yet; create from an already quantized GGUF", param="quantize")
    if body.adapters:
        raise BadRequest("adapters (LoRA) are not supported yet", param="adapters")
    license_text = "\n".join(body.license) if isinstance(body.license, list) else body.license
    files = dict(body.files or {})
    # A safetensors model directory uploaded file by file (Ollama's import of HF models): converted to GGUF.
    model_dir = any(name.endswith(".safetensors") for name in files)
    if body.files is not None and not model_dir and len(files) != 1:
        raise BadRequest("files must name exactly one GGUF blob, or the files of a safetensors model directory "
                         "(split GGUF models are not supported yet)", param="files")
    if not files and not body.from_:
        raise BadRequest("either from or files is required", param="from")
    base: ModelRecord | None = None
    digests = [validate_digest(d) for d in files.values()]
    if not files:
        base = generation_of(request).model(None, body.from_)
        digests = ["sha256:" + base.model_path.name.removeprefix("sha256-")]
    params = body.parameters if body.parameters is not None else (base.parameters if base else None)
    model_parameters(params)  # a bad parameter is a 400 now, not a broken model later
    if body.messages:
        raise BadRequest("messages in create are not supported yet", param="messages")
    layers: dict[str, Any] = {
        "template": body.template if body.template is not None else (base.template if base else None),
        "system": body.system if body.system is not None else (base.system if base else None),
        "parameters": params or None,
        "license": license_text if license_text is not None else (base.license if base else None)}

    async def work(emit: Any) -> None:
        async def say(status: str) -> None:
            if emit:
                await emit({"status": status})

        if model_dir:
            await say("converting model")
            record = await asyncio.to_thread(state.store.create_from_model_blobs, body.model, files, **layers)
            await say(f"creating new layer sha256:{record.model_path.name.removeprefix('sha256-')}")
            await say("writing manifest")
        else:
            await say("parsing GGUF")
            await say(f"using existing layer {digests[0]}")
            await say("writing manifest")
            await asyncio.to_thread(state.store.create_from_blob, body.model, digests[0], **layers)
        await say("success")

    if not body.stream:
        await work(None)
        return JSONResponse({"status": "success"})
    # validate before streaming so a bad blob or file name gives a proper status code
    if model_dir:
        state.store.check_model_files(files)
    for digest in digests:
        if not state.store.blobs.has_blob(digest):
            raise BadRequest(f"blob {digest} not found; upload it with POST /api/blobs/{digest} first", param="files")
    return await _progress_response(True, work)


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    body = await parse_body(request, CopyRequest)
    await asyncio.to_thread(state_of(request).store.copy, body.source, body.destination)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    body = await parse_body(request, DeleteRequest)
    state = state_of(request)
    record = generation_of(request).model(None, body.model)
    await state.manager.unload(record.name)
    await asyncio.to_thread(state.store.delete, record.name)
    return Response(status_code=200)


@router.head("/api/blobs/{digest}")
async def blob_exists(request: Request, digest: str) -> Response:
    digest = validate_digest(digest)
    return Response(status_code=200 if state_of(request).store.blobs.has_blob(digest) else 404)


@router.post("/api/blobs/{digest}")
async def blob_upload(request: Request, digest: str) -> Response:
    digest = validate_digest(digest)
    blobs = state_of(request).store.blobs
    if blobs.has_blob(digest):
        return Response(status_code=200)
    writer = BlobWriter(blobs, expected=digest)
    try:
        async for chunk in request.stream():
            if chunk:
                await asyncio.to_thread(writer.write, chunk) if len(chunk) > 1 << 20 else writer.write(chunk)
        await asyncio.to_thread(writer.commit)
    finally:
        writer.abort()
    return Response(status_code=201)
