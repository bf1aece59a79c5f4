"""The generation service: one direction from a parsed request to a metered event stream.

    parse (router) → resolve model + options → admit (policy, rate) → augment (retrieval) → render
    → resolve limits (num_ctx, max_tokens, keep_alive: each decided here and nowhere else) → reserve
    (tokens) → schedule (backend) → meter (usage, revocation) → stream (router)

The routers translate their dialect into a `Draft` and render the events back; course assistants
and the web page come the same way. The resolved `GenerationRequest` is immutable: the scheduler and
the runner use its limits as they are. Two named insertion points for what comes next: `augment` on
a chat draft (course documents are retrieved there, after admission and before rendering) and the
`BackendSelector` (local runners today, remote engines later).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from flexi import i18n
from flexi.access.caller import Caller
from flexi.access.gate import AccessGate
from flexi.access.policy import Limits, allowed_context
from flexi.service.options import ModelOptions, max_tokens_of, merged, sampling_of
from flexi.config import Settings
from flexi.durations import DurationError, parse_duration
from flexi.energy.busy import BusyTracker
from flexi.engine.types import (
    BadRequest,
    EmbeddingRequest,
    EmbeddingResult,
    EngineError,
    GenerationRequest,
    ModelNotFound,
    TooManyRequests,
)
from flexi.prompt.grammar import grammar_for_format
from flexi.prompt.render_pool import render_off_loop, render_turn
from flexi.prompt.rendering import check_capabilities, render_generate, render_messages, supports_thinking
from flexi.service.aliases import ModelAliasTable
from flexi.service.backends import Backend, BackendSelector, Event, renders_itself
from flexi.service.remote import RemoteBackends
from flexi.store.store import ModelRecord, ModelStore

#: A retrieval step: given the caller and the chat's messages, return the messages to render
#: (course documents put their passages here). Runs after admission, before rendering.
Augment = Callable[[Caller, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class ChatPrompt:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    think: Any = None
    has_images: bool = False
    augment: Augment | None = None
    tool_choice: str | None = None  # None: the model decides; "required": some tool; else the tool's name


@dataclass(frozen=True)
class TextPrompt:
    """/api/generate's prompt (or a raw completion prompt)."""

    prompt: str
    system: str | None = None
    template: str | None = None
    suffix: str | None = None
    raw: bool = False
    think: Any = None
    has_images: bool = False


@dataclass(frozen=True)
class Draft:
    """What a router parsed, before anything is decided for it."""

    #: the prompt, or a function that builds it after admission (a dialect's conversion that costs work
    #: or refuses content: an over-quota caller gets their 429 before it runs)
    prompt: ChatPrompt | TextPrompt | Callable[[], ChatPrompt | TextPrompt]
    options: ModelOptions | None = None
    body: BaseModel | None = None  # the parsed body: its size bounds the prompt for rate admission
    fmt: Any = None  # a dialect's output format (JSON mode or schema), compiled to a grammar here
    format_param: str = "format"
    keep_alive: Any = None
    prefix_tokens: list[int] = field(default_factory=list)  # Ollama's `context`
    return_tokens: bool = False
    end_user: str | None = None  # an application's own user id (OpenAI `user`)
    body_priority: int | None = None
    logprobs: int | None = None  # generated tokens' logprobs with this many alternatives (None: not asked)
    prompt_logprobs: bool = False  # score the prompt (OpenAI's echo with logprobs); the prompt as sent, raw


@dataclass(frozen=True)
class EmbedDraft:
    inputs: list[str]
    truncate: bool = True
    normalize: bool = True
    num_ctx: int | None = None
    keep_alive: Any = None
    end_user: str | None = None


@dataclass(frozen=True)
class Context:
    """The context decision for one request: what the model runs with (`num_ctx`, None = its configured
    default, so a capped caller never makes it load smaller for everyone) and how much of it the caller
    may use (`usable`: prompt plus output)."""

    num_ctx: int | None
    usable: int


_NOT_PROMPT: Any = {"images": True, "messages": {"__all__": {"images"}}}  # pixels are not prompt tokens


def keep_alive_seconds(value: Any) -> float | None:
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise BadRequest(str(exc), param="keep_alive") from None


def check_prompt_size(prompt_bytes: int, prefix_tokens: int, context: int, bytes_per_token: int,
                      param: str = "prompt") -> None:
    """Refuse, before queueing, billing or tokenising, a prompt that cannot fit `context` tokens with any
    tokenizer; the runner checks the exact token count for everything that passes."""
    room = context - prefix_tokens
    if room <= 0 or prompt_bytes > room * bytes_per_token:
        raise BadRequest(f"the prompt is too long: {prompt_bytes} bytes (and {prefix_tokens} context tokens) cannot fit "
                         f"the context of {context} tokens this request may use; shorten the prompt", param=param)


def output_limit(requested: int, caps: tuple[int | None, ...], max_predict: int) -> int:
    """The one decision on how many tokens a request may generate: what it asked for (-1 = until the
    context is full) within each cap (the policy's max_output, the usable context, the quota
    reservation) and FLEXI_MAX_PREDICT."""
    out = requested
    for cap in caps:
        if cap is not None:
            out = cap if out < 0 else min(out, cap)
    return max_predict if out < 0 else min(out, max_predict)


class Grounding(Protocol):
    """Retrieval for one request: `augment` puts the passages into the chat (after admission, before
    rendering), `citations` maps the answer's [n] back to documents and pages."""

    async def augment(self, caller: Caller, messages: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def citations(self, answer: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Target:
    """What a request's `model` names: the model that runs, the caller as billed (a course assistant
    bills its course), the name to echo back, and an assistant's instructions and options."""

    record: ModelRecord
    caller: Caller
    name: str
    instructions: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    grounding: Grounding | None = None  # a course assistant with documents answers from them
    #: a prompt template (issue 15) builds the whole chat from the client's messages (its parameters, checked,
    #: as delimited data); the client's other turns and system messages do not reach the model
    builder: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None

    @property
    def builds_prompt(self) -> bool:
        """True for a prompt template: the client supplies parameters, not a prompt (no raw mode, no
        custom template, no Ollama `context`, no suffix)."""
        return self.builder is not None

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation with the assistant's instructions first (they keep their authority), or the
        template's chat built from it."""
        if self.builder is not None:
            return self.builder(messages)
        return [{"role": "system", "content": self.instructions}, *messages] if self.instructions else messages

    def text_prompt(self, prompt: str, system: str | None) -> tuple[str, str | None]:
        """A text prompt's (/api/generate, /v1/completions) prompt and system message for this target: the
        instructions join the client's system message; a template builds both from the prompt."""
        if self.builder is not None:
            built = self.builder([{"role": "user", "content": prompt}])
            return built[-1]["content"], built[0]["content"]
        return prompt, "\n\n".join(part for part in (self.instructions, system or "") if part) or None

    def merged_options(self, client: ModelOptions | None) -> ModelOptions | None:
        """The client's options under the assistant's: what the teacher set wins."""
        if not self.options:
            return client
        given = client.model_dump(exclude_none=True) if client is not None else {}
        return ModelOptions.model_validate({**given, **self.options})


class ModelAliases(Protocol):
    """Names that stand for something else than a stored model (`assistant/<slug>`, `template/<slug>`):
    registered by the layer that owns them (both live in flexi/campus/), so every dialect accepts them."""

    prefix: str

    async def resolve(self, caller: Caller, name: str) -> Target: ...

    async def listed(self, caller: Caller) -> list[tuple[str, ModelRecord]]: ...


class GenerationService:
    def __init__(self, settings: Settings, store: ModelStore, gate: AccessGate, backends: BackendSelector,
                 remote: RemoteBackends | None = None) -> None:
        self.settings = settings
        self.store = store
        self.gate = gate
        self.backends = backends
        self.remote = remote  # models served by remote engines ([[backends]]); they win over a local namesake
        self.aliases: list[ModelAliases] = []
        self.model_aliases: ModelAliasTable | None = None  # `gpt-4o` → a real model ([aliases], /admin/aliases)
        self.energy: BusyTracker | None = None  # busy time per model and course (FLEXI_ENERGY); None = not tracked

    async def target(self, caller: Caller, name: str | None) -> Target:
        """What `name` means for this caller: an alias (a course assistant) or a stored model they may use."""
        for alias in self.aliases:
            if name and name.startswith(alias.prefix):
                return await alias.resolve(caller, name)
        record = self.model(caller, name)
        return Target(record, caller, name if self.alias_of(name) is not None else record.name)

    async def listing(self, caller: Caller, records: list[ModelRecord]) -> list[tuple[str, ModelRecord]]:
        """The names a model list shows this caller: the stored models they may use, the model aliases whose
        target they may use, then their course assistants."""
        shown = [(r.name, r) for r in self.visible(caller, self.with_remote(records))]
        if self.model_aliases is not None:
            for entry in self.model_aliases.entries():
                if self.alias_of(entry.name) is None:  # a real model of that name hides it (listed above)
                    continue
                try:
                    shown.append((entry.name, self.model(caller, entry.name)))
                except (ModelNotFound, BadRequest):  # dangling, or its target is forbidden for this caller
                    continue
        for alias in self.aliases:
            shown += await alias.listed(caller)
        return shown

    def alias_of(self, name: str | None) -> str | None:
        """The model the alias `name` stands for right now, or None when `name` is no alias (or a real model
        of that name hides it)."""
        if not name or self.model_aliases is None:
            return None
        entry = self.model_aliases.get(name)
        if entry is None or self.stored_model(name) is not None:
            return None
        return entry.target

    def saved_name(self, caller: Caller, name: str) -> str:
        """The model name a saved reference (a course assistant, a prompt template, an LTI deep link) keeps:
        an admin alias as its own name, so the reference follows the alias when an admin repoints it; else
        the model's canonical name. Checks now that the caller may use what it stands for (every run checks
        again, through `model`)."""
        record = self.model(caller, name)
        if self.alias_of(name) is not None and self.model_aliases is not None:
            entry = self.model_aliases.get(name)
            if entry is not None:
                return entry.name
        return record.name

    # --- models ----------------------------------------------------------------------------
    def listed_as(self, caller: Caller, prefix: str, named: list[tuple[str, str]]) -> list[tuple[str, ModelRecord]]:
        """Model-list entries for aliases (`prefix` + slug, the model behind it), leaving out those whose
        model is gone or not for this caller (an `assistant/…` or `template/…` is never a way around a policy)."""
        out: list[tuple[str, ModelRecord]] = []
        for slug, model in named:
            try:
                out.append((prefix + slug, self.model(caller, model)))
            except EngineError:
                continue
        return out

    def model(self, caller: Caller | None, name: str | None) -> ModelRecord:
        """The model `name`; with a caller, only if they may use it. A model the caller may not use is
        reported exactly like a missing one (no enumeration). With a caller, a model alias stands for its
        target (for requests); without one (model management: delete, create from) only real models count,
        so deleting an alias's name can never delete its target."""
        if not name:
            raise BadRequest("model is required", param="model")
        record = self.stored_model(name)
        if record is None:
            target = self.alias_of(name) if caller is not None else None
            if target is None:
                record = self.store.get(name)  # raises the store's own error: not found, or not a valid name
            else:  # one hop, resolved now: the alias follows its target; the target's policy decides below
                record = self.stored_model(target)
                if record is None:
                    raise ModelNotFound(name)  # dangling: like a missing model (the target is not revealed)
        if caller is not None and not self.gate.visible(caller.principal, record.name):
            raise ModelNotFound(name)
        return record

    def stored_model(self, name: str) -> ModelRecord | None:
        """The model (remote or in the store) of exactly this name, or None."""
        remote = self.remote.record(name) if self.remote is not None else None
        if remote is not None:
            return remote
        try:
            return self.store.get(name)
        except ModelNotFound:
            return None

    def with_remote(self, records: list[ModelRecord]) -> list[ModelRecord]:
        """The stored models and those of remote backends (a remote model hides a stored namesake)."""
        if self.remote is None or not self.remote.models:
            return records
        return [r for r in records if self.remote.record(r.name) is None] + self.remote.records()

    def visible(self, caller: Caller, records: list[ModelRecord]) -> list[ModelRecord]:
        """The models the caller may use (model lists show nothing else)."""
        return [r for r in records if self.gate.visible(caller.principal, r.name)]

    def check_message_count(self, count: int) -> None:
        limit = self.settings.max_messages
        if count > limit:
            raise BadRequest(f"too many messages: {count}, at most {limit} are allowed per request (FLEXI_MAX_MESSAGES)",
                             param="messages")

    def context(self, caller: Caller, limits: Limits, record: ModelRecord, requested: int | None) -> Context:
        """The one decision on a request's context (see `Context`): the caller's cap and, for everyone but
        admins, no reload beyond the model's configuration (issue 11)."""
        backend = self.backends(record)
        num_ctx = allowed_context(caller.principal, requested, limits, backend.context_ceiling(record))
        runs_with = backend.context_for(record, num_ctx)
        usable = runs_with if limits.max_context is None else min(runs_with, limits.max_context)
        return Context(num_ctx, usable)

    # --- loading -----------------------------------------------------------------------------
    async def load_only(self, caller: Caller, record: ModelRecord, keep_alive: Any) -> tuple[str, int]:
        """An empty prompt: load (or, with keep_alive 0, unload) the model, like Ollama. A load is a
        request: rate limits and usage apply. Returns ("load" | "unload", load nanoseconds)."""
        await self.gate.count_request(caller, record.name)
        keep = self.gate.keep_alive_for(caller.principal, keep_alive_seconds(keep_alive))
        manager = self.backends(record)
        if keep is not None and keep == 0:
            await manager.unload(record.name)  # type: ignore[attr-defined]
            return "unload", 0
        return "load", await manager.load(record.name, keep)  # type: ignore[attr-defined]

    # --- generation ----------------------------------------------------------------------------
    async def run(self, target: Target, draft: Draft) -> AsyncIterator[Event]:
        """`draft` for what its `model` named (the routers' one way in): billed as the target says, and for
        a target that builds its own prompt (a prompt template) without the client's prompt parts."""
        return await self.generate(target.caller, target.record, draft, builds_prompt=target.builds_prompt)

    async def generate(self, caller: Caller, record: ModelRecord, draft: Draft, *,
                       builds_prompt: bool = False) -> AsyncIterator[Event]:
        """Admit, render and resolve `draft`, and return its metered event stream (not yet started).
        `builds_prompt`: the prompt is a template's, which refuses tools, formats and images (`_refuse_for_template`).

        Everything before the stream that fails hands the admission back (`release_unclaimed`), so a
        request refused while rendering still counts for the rate limits and leaves a usage record."""
        caller = self.gate.for_end_user(caller, draft.end_user)  # a service key's end user: own limits, pseudonym
        options = merged(record.parameters, draft.options)
        backend = self.backends(record)
        if (draft.logprobs is not None or draft.prompt_logprobs) and renders_itself(backend):
            # the runner computes them from logits; remote engines' wires differ in whether and how they do
            raise BadRequest(i18n.text("logprobs_remote", caller.locale, model=record.name), param="logprobs")
        brought = len(draft.body.model_dump_json(exclude=_NOT_PROMPT, exclude_none=True).encode("utf-8")) \
            if draft.body is not None else 0
        bound = min(brought, backend.context_for(record, options.num_ctx))
        admission = await self.gate.admit(caller, record.name, prompt_bound=bound)
        try:
            spec = draft.prompt() if callable(draft.prompt) else draft.prompt
            if builds_prompt:
                _refuse_for_template(caller.locale, draft, spec)
            if renders_itself(backend):
                prompt, messages = await self._remote_prompt(caller, record, draft, spec)
            else:
                prompt, messages = await self._prompt(caller, record, spec), None
            req = self._resolve(caller, admission.limits, record, draft, options, prompt, messages)
            if renders_itself(backend):  # the engine gets tools and thinking as asked, not rendered
                think = spec.think if supports_thinking(record) else None  # an explicit false stays with us
                req = dataclasses.replace(req, think=think, **_remote_tools(spec))
        except BaseException as exc:
            self.gate.release_unclaimed(admission, exc)
            raise
        # the tokens of exactly this prompt and output; a refusal here is recorded by the gate itself
        admission = await self.gate.reserve(admission, len(prompt.encode("utf-8")) + 1 + len(req.prefix_tokens),
                                            req.max_tokens)
        if admission.reservation.max_output is not None:
            capped = output_limit(req.max_tokens, (admission.reservation.max_output,), self.settings.max_predict)
            req = dataclasses.replace(req, max_tokens=capped, open_output=req.open_output and capped == req.max_tokens)
        events = backend.generate(req, record)
        if self.energy is not None and not renders_itself(backend):  # this host's power, by the time requests
            events = self.energy.watch(events, record.name, admission.course_id)  # run here: remote engines draw elsewhere
        return self.gate.meter(admission, req, events)

    async def _prompt(self, caller: Caller, record: ModelRecord, spec: ChatPrompt | TextPrompt) -> str:
        """The prompt text, rendered off the event loop (templates are untrusted CPU work), in the
        caller's turn at the render pool."""
        think = bool(spec.think) if spec.think is not None else None
        if isinstance(spec, ChatPrompt):
            messages = await self._chat_messages(caller, record, spec)
            async with self._render_turn(caller, record):
                return await render_off_loop(render_messages, record, messages, tools=spec.tools, think=think)
        check_capabilities(record, think=spec.think, images=spec.has_images, suffix=spec.suffix)
        if spec.raw:
            return spec.prompt
        async with self._render_turn(caller, record):
            return await render_off_loop(render_generate, record, spec.prompt, system=spec.system,
                                         template=spec.template, suffix=spec.suffix, think=think)

    async def _chat_messages(self, caller: Caller, record: ModelRecord, spec: ChatPrompt) -> list[dict[str, Any]]:
        """A chat's messages, checked against what the model can do and augmented (retrieval)."""
        check_capabilities(record, tools=spec.tools, think=spec.think, images=spec.has_images)
        for i, m in enumerate(spec.messages):
            if not isinstance(m.get("role"), str) or not m["role"]:
                raise BadRequest(f"messages[{i}].role is required", param=f"messages.{i}.role")
        return spec.messages if spec.augment is None else await spec.augment(caller, spec.messages)

    async def _remote_prompt(self, caller: Caller, record: ModelRecord, draft: Draft,
                             spec: ChatPrompt | TextPrompt) -> tuple[str, list[dict[str, Any]] | None]:
        """For an engine that applies the chat template itself: the messages it gets (None for a raw
        prompt) and their plain text, which sizes, reserves and bills the request like a rendered one."""
        if isinstance(spec, ChatPrompt):
            chat = await self._chat_messages(caller, record, spec)
        else:
            check_capabilities(record, think=spec.think, images=spec.has_images, suffix=spec.suffix)
            if spec.template:
                raise BadRequest(f'"{record.name}" runs on a remote backend, which applies its own template',
                                 param="template")
            if spec.raw:
                return spec.prompt, None
            chat = ([{"role": "system", "content": spec.system}] if spec.system else []) + \
                [{"role": "user", "content": spec.prompt}]
        messages = [_engine_message(m) for m in chat]
        tools = spec.tools if isinstance(spec, ChatPrompt) and spec.tools else None
        text = "\n".join(f"{m['role']}: {m['content']}" + (" " + json.dumps(m["tool_calls"]) if m.get("tool_calls") else "")
                         for m in messages)  # calls and tools count for the size, as the engine renders them
        return (text + ("\n" + json.dumps(tools) if tools else "")), messages

    @contextlib.asynccontextmanager
    async def _render_turn(self, caller: Caller, record: ModelRecord) -> AsyncIterator[None]:
        """One render at a time per person (the fair-queue identity, without an end-user suffix), at
        most their per-model request cap of them in line; beyond it the gate's localized 429."""
        try:
            async with render_turn(caller.identity, self.gate.max_concurrent_for(caller.principal)):
                yield  # the body only renders: a TooManyRequests here can only come from the turn
        except TooManyRequests as exc:
            raise self.gate.too_many(caller, exc, record.name) from None

    def _resolve(self, caller: Caller, limits: Limits, record: ModelRecord, draft: Draft, options: ModelOptions,
                 prompt: str, messages: list[dict[str, Any]] | None = None) -> GenerationRequest:
        """Every limit of the request, decided once (the quota reservation may only lower max_tokens)."""
        ctx = self.context(caller, limits, record, options.num_ctx)
        check_prompt_size(len(prompt.encode("utf-8")), len(draft.prefix_tokens), ctx.usable,
                          self.settings.max_prompt_bytes_per_token)
        requested = max_tokens_of(options)
        max_tokens = output_limit(requested, (limits.max_output, ctx.usable), self.settings.max_predict)
        remote = renders_itself(self.backends(record))  # the engine gets the format and the limit as asked
        open_output = remote and requested < 0 and limits.max_output is None and max_tokens == ctx.usable
        return GenerationRequest(
            model=record.name,
            prompt=prompt,
            prefix_tokens=list(draft.prefix_tokens),
            max_tokens=max_tokens,
            stop=list(options.stop or []),
            sampling=sampling_of(options),
            grammar=grammar_for_format(draft.fmt, param=draft.format_param),
            ignore_eos=bool(options.ignore_eos),
            num_ctx=ctx.num_ctx,
            keep_alive=self.gate.keep_alive_for(caller.principal, keep_alive_seconds(draft.keep_alive)),
            return_tokens=draft.return_tokens,
            user=caller.identity_for(draft.end_user),
            priority=caller.priority_for(draft.body_priority),
            max_concurrent=self.gate.max_concurrent_for(caller.principal),
            messages=messages,
            open_output=open_output,
            output_format=(draft.fmt or None) if remote else None,
            logprobs=draft.logprobs,
            prompt_logprobs=draft.prompt_logprobs,
        )

    # --- embeddings --------------------------------------------------------------------------
    async def embed(self, caller: Caller, record: ModelRecord, draft: EmbedDraft) -> EmbeddingResult:
        """Embed through the access gate (policy, quota on input tokens, usage record)."""
        limit = self.settings.max_embedding_inputs
        if len(draft.inputs) > limit:
            raise BadRequest(f"too many inputs: {len(draft.inputs)}, at most {limit} are allowed per request "
                             "(FLEXI_MAX_EMBEDDING_INPUTS)", param="input")
        caller = self.gate.for_end_user(caller, draft.end_user)
        limits = self.gate.limits(caller.principal, record.name)
        ctx = self.context(caller, limits, record, draft.num_ctx)
        if not draft.truncate:  # truncated inputs are cut to the context by the runner; the body size bounds them
            for text in draft.inputs:
                check_prompt_size(len(text.encode("utf-8")), 0, ctx.usable, self.settings.max_prompt_bytes_per_token,
                                  "input")
        req = EmbeddingRequest(model=record.name, inputs=draft.inputs, truncate=draft.truncate,
                               normalize=draft.normalize, num_ctx=ctx.num_ctx,
                               keep_alive=self.gate.keep_alive_for(caller.principal, keep_alive_seconds(draft.keep_alive)),
                               user=caller.identity_for(draft.end_user), priority=caller.priority_for(None),
                               max_concurrent=self.gate.max_concurrent_for(caller.principal))
        backend: Backend = self.backends(record)
        return await self.gate.embed(caller, record.name, draft.inputs, lambda: backend.embed(req, record),
                                     lambda result: result.prompt_tokens)


#: what of a chat message a remote engine gets: Flexi's message shape (Ollama's), which each wire translates
_ENGINE_KEYS = ("tool_calls", "tool_call_id", "name", "images")


def _engine_message(m: dict[str, Any]) -> dict[str, Any]:
    out = {"role": m["role"], "content": m.get("content") or ""}
    out.update({k: m[k] for k in _ENGINE_KEYS if m.get(k)})
    return out


def _refuse_for_template(locale: str, draft: Draft, spec: ChatPrompt | TextPrompt) -> None:
    """A prompt template's run takes its parameters and nothing else into the prompt: tool and schema
    descriptions are rendered as instructions and images are content, so each of them would bypass "the
    parameters are data, never instructions". Refused with a 400 naming the field the client sent."""
    body = draft.body
    sent = (
        ("tools", bool(getattr(spec, "tools", None) or getattr(body, "tools", None))),
        ("tool_choice", getattr(spec, "tool_choice", None) is not None or getattr(body, "tool_choice", None) is not None),
        (draft.format_param, bool(draft.fmt)),
        ("images", spec.has_images),
        ("echo", draft.prompt_logprobs),  # the scored prompt would be the template's, not the one sent
    )
    for field_name, given in sent:
        if given:
            raise BadRequest(i18n.text("tpl_client_field", locale, field=field_name), param=field_name)


def _remote_tools(spec: ChatPrompt | TextPrompt) -> dict[str, Any]:
    if isinstance(spec, ChatPrompt) and spec.tools:
        return {"tools": spec.tools, "tool_choice": spec.tool_choice}
    return {}


def runner_request(record: ModelRecord, prompt: str, options: ModelOptions, *, return_tokens: bool = False,
                   max_predict: int) -> GenerationRequest:
    """The request an unlimited caller's prompt resolves to (benchmarks compare the runner socket with
    the HTTP path using exactly this)."""
    opts = merged(record.parameters, options)
    return GenerationRequest(model=record.name, prompt=prompt, max_tokens=output_limit(
        max_tokens_of(opts), (), max_predict), stop=list(opts.stop or []), sampling=sampling_of(opts),
        ignore_eos=bool(opts.ignore_eos), num_ctx=opts.num_ctx, return_tokens=return_tokens)


