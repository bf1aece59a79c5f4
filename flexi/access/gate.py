"""The gate every generation and embedding passes, whichever API dialect
received it: model policy, course billing, quota reservation, usage record,
the per-person cap on concurrent requests (across replicas with FLEXI_REDIS_URL:
flexi.access.shared_state), and the end of open streams when access is revoked.
It knows callers, not HTTP: every method takes the `Caller` the access
middleware resolved.

Admission comes in two steps around the prompt's rendering (the generation
service drives them): `admit` (policy, rate, and room for what the request
brings) before any expensive work, `reserve` (the tokens of the real prompt and
the output) once the prompt exists, then `meter` records the stream. An
admission no stream claimed (the request failed in between, e.g. a bad
template) is handed back with `release_unclaimed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine, or_, select

from flexi import i18n
from flexi.access.authn import Authenticator
from flexi.access.caller import Billing, Caller
from flexi.access.errors import AccessError, forbidden, quota_exceeded, shared_state_unavailable, too_many_requests
from flexi.access.policy import Limits, PolicyBook
from flexi.access.principal import Principal
from flexi.access.quota import QuotaLedger, QuotaRefusal, Reservation, splits_end_users
from flexi.access.shared_state import ConcurrencyLeases, Lease, SharedStateUnavailable
from flexi.access.usage import UsageEntry, UsageWriter
from flexi.access.usage_journal import RUNNING
from flexi.config import Settings
from flexi.db.models import ApiKey, Course, User, utcnow, iso_z
from flexi.access.end_user_privacy import end_user_pseudonym
from flexi.engine.remote.wire import BackendsDown
from flexi.engine.types import (
    EngineError,
    GenerationRequest,
    GenerationStats,
    ModelNotFound,
    Prefill,
    TextChunk,
    TooManyRequests,
)
from flexi.observability.metrics import Metrics

log = logging.getLogger("flexi.access")
WATCH_INTERVAL = 1.0
T = TypeVar("T")


@dataclass(eq=False)
class _Stream:
    principal: Principal
    revoked: bool = False


@dataclass(frozen=True)
class Admission:
    """A request the gate let in: whose it is, whom it bills, the caller's limits on the model
    (policy decided once, here) and the quota reservation (empty until `reserve`)."""

    caller: Caller
    course_id: int | None
    limits: Limits
    reservation: Reservation
    endpoint: str
    model: str
    started: float = field(default_factory=time.perf_counter)
    assistant_id: int | None = None
    template_id: int | None = None  # a prompt template's run (issue 15) and its version
    template_version: int | None = None

    @property
    def marks(self) -> dict[str, int | None]:
        """What the usage record says the request went through (an assistant, a template's version)."""
        return {"assistant_id": self.assistant_id, "template_id": self.template_id,
                "template_version": self.template_version}

    @property
    def principal(self) -> Principal:
        return self.caller.principal


def _marks(billing: Billing | None) -> dict[str, int | None]:
    """The usage record's marks a route's billing sets (a course assistant, a prompt template's version)."""
    if billing is None:
        return {}
    return {"assistant_id": billing.assistant_id, "template_id": billing.template_id,
            "template_version": billing.template_version}


class AccessGate:
    def __init__(self, settings: Settings, engine: Engine, authn: Authenticator, policies: PolicyBook,
                 quotas: QuotaLedger, usage: UsageWriter) -> None:
        self.settings = settings
        self.engine = engine
        self.authn = authn
        self.policies = policies
        self.quotas = quotas
        self.usage = usage
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count()
        self._courses: dict[str, tuple[int | None, float]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.metrics: Metrics | None = None  # Prometheus metrics (/metrics), set by the app when FLEXI_METRICS is on
        self.leases: ConcurrencyLeases | None = None  # the per-person cap across replicas (FLEXI_REDIS_URL)

    # --- models -------------------------------------------------------------------
    def limits(self, principal: Principal, model: str) -> Limits:
        """The caller's limits on `model`; a forbidden model is reported exactly like a missing one."""
        decided = self.policies.decide(principal, model)
        if decided is None:
            raise ModelNotFound(model)
        return decided

    def visible(self, principal: Principal, model: str) -> bool:
        return self.policies.decide(principal, model) is not None

    def keep_alive_for(self, principal: Principal, requested: float | None) -> float | None:
        """How long a model stays loaded is shared state: only admins (and auth=off) choose it;
        everyone else gets the server's default (no pinning a model forever, no unloading it
        under other people's requests)."""
        return requested if principal.is_admin or principal.local else None

    def max_concurrent_for(self, principal: Principal) -> int | None:
        """How many requests the caller may have running or waiting per model (None = no cap of
        its own: auth=off clients pick their identity themselves, FLEXI_MAX_QUEUE bounds them)."""
        caps = self.settings.role_max_requests
        if principal.local:
            cap = caps.get("local")
        else:
            cap = caps.get(principal.role, self.settings.max_requests_per_user)
        return cap if cap else None

    def too_many(self, caller: Caller, exc: TooManyRequests, model: str) -> AccessError:
        """The localized 429 for a per-person cap (the scheduler's, or the render pool's)."""
        text = i18n.text("too_many_requests", caller.locale, limit=exc.limit, model=model, retry=exc.retry_after)
        return too_many_requests(text, exc.retry_after, limit="concurrent_requests", value=exc.limit,
                                 scope="user")

    def backends_down(self, caller: Caller, exc: BackendsDown) -> BackendsDown:
        """The localized 503 for a model whose remote backends all have their circuit open."""
        exc.message = i18n.text("backends_down", caller.locale, model=exc.model, retry=exc.retry_after)
        exc.args = (exc.message,)
        return exc

    async def _lease(self, caller: Caller, model: str, limit: int | None, identity: str | None = None) -> Lease | None:
        """A place under the caller's per-person cap on all replicas together (FLEXI_REDIS_URL); each
        replica's scheduler still applies the same cap to its own requests. Over it: the same 429.
        `identity`: the person the scheduler's fair queue caps (a service key's end user, `identity_for`),
        so Redis counts exactly who the local cap counts; default the caller."""
        if self.leases is None or limit is None:
            return None
        try:
            lease = await self.leases.acquire(identity or caller.identity, model, limit)
        except SharedStateUnavailable as exc:
            raise shared_state_unavailable(i18n.text("shared_state_unavailable", caller.locale, retry=exc.retry_after),
                                           exc.retry_after) from None
        if lease is None:
            raise TooManyRequests(limit)
        return lease

    async def _unlease(self, lease: Lease | None) -> None:
        if lease is not None and self.leases is not None:
            await asyncio.shield(self.leases.release(lease))

    async def count_request(self, caller: Caller, model: str) -> None:
        """Admit and record a request that generates nothing (loading a model)."""
        admission = await self._admit(caller, self.limits(caller.principal, model), 0, 0, model)
        self.usage.submit(self._entry(admission, status="ok"))

    def for_end_user(self, caller: Caller, end_user: str | None) -> Caller:
        """The caller acting for an application's own end user (OpenAI's `user`): a `service` key's
        requests then count against the key's limits for each end user as well, and usage records carry
        the end user's pseudonym - a keyed hash scoped to the key's owner, so the raw id (a Moodle user's
        hash) is never stored and the same id at two sites never links. Anyone else: unchanged."""
        if not end_user or not splits_end_users(caller.principal):
            return caller
        pseudonym = end_user_pseudonym(caller.principal.user_id, end_user, self.authn.pseudonym_key)
        return dataclasses.replace(caller, end_user=pseudonym)

    # --- generation --------------------------------------------------------------------
    async def admit(self, caller: Caller, model: str, *, prompt_bound: int) -> Admission:
        """Policy, rate and token admission for a generation before its prompt exists.

        Called before the prompt is rendered or tokenized, so a caller over their rate or with
        too few tokens left for what the request brings (`prompt_bound`) costs a lookup, not a
        template run. Nothing is reserved yet: `reserve` does that for the real prompt
        (QuotaLedger.admit's two phases)."""
        t0 = time.perf_counter()
        limits = self.limits(caller.principal, model)
        bound = prompt_bound if limits.max_context is None else min(prompt_bound, limits.max_context)
        admission = await self._admit(caller, limits, bound, 0, model, phase="rate")
        caller.timings.add_gate((time.perf_counter() - t0) * 1000)
        return admission

    async def reserve(self, admission: Admission, prompt_bound: int, max_output: int) -> Admission:
        """Reserve the tokens of the rendered prompt and of the output (the request was counted by
        `admit`); the returned admission's reservation may cap the output (`max_output`)."""
        t0 = time.perf_counter()
        reserved = await self._admit(admission.caller, admission.limits, prompt_bound, max_output, admission.model,
                                     phase="tokens")
        admission.caller.timings.add_gate((time.perf_counter() - t0) * 1000)
        return dataclasses.replace(admission, reservation=reserved.reservation)

    def release_unclaimed(self, admission: Admission, error: BaseException | None = None) -> None:
        """Record an admitted request that never started generating (a 400 while rendering its
        prompt, say): it counted for the rate limits, and the usage record says so."""
        self.usage.submit(self._entry(admission, status="error"))
        if self.metrics is not None:
            self.metrics.refused(model=admission.model, endpoint=admission.endpoint, course_id=admission.course_id,
                                 status="error", error=_error_type(error))

    async def meter(self, admission: Admission, req: GenerationRequest,
                    events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass `events` through while watching for revocation, and record the usage: journaled as
        "running" when the stream starts (a replica killed mid-stream leaves it on record), completed at
        the end with the runner's figures when it finished, else the prefill a runner slot took on and
        what was delivered. `Prefill` events stop here (billing facts, not output)."""
        caller = admission.caller
        stream_id, handle = next(self._ids), _Stream(caller.principal)
        self._streams[stream_id] = handle
        self._ensure_watcher()
        delivered, prefill, stats, status = 0, 0, None, "error"
        first: float | None = None  # when the first token came (time to first token)
        error: str | None = None  # the error type, for the metrics
        parts: list[str] | None = [] if self.usage.content_logging else None
        lease: Lease | None = None
        journal = self._journal(admission)
        try:
            lease = await self._lease(caller, req.model, req.max_concurrent, req.user)
            async for ev in events:
                if handle.revoked:
                    raise forbidden(i18n.text("revoked", caller.locale), code="access_revoked")
                if isinstance(ev, Prefill):
                    prefill = ev.prompt_tokens
                    continue
                if isinstance(ev, TextChunk):
                    delivered = ev.n_tokens
                    if first is None and delivered:
                        first = time.perf_counter()
                    if parts is not None:
                        parts.append(ev.text)
                elif isinstance(ev, GenerationStats):
                    stats = ev
                yield ev
            status = "ok"
        except (GeneratorExit, asyncio.CancelledError):
            status = "cancelled"
            raise
        except TooManyRequests as exc:  # the scheduler's per-person cap: nothing ran, nothing is billed
            status, error = "rejected", exc.code
            raise self.too_many(caller, exc, req.model) from None
        except BackendsDown as exc:  # nothing was sent to any backend, nothing is billed
            status, error = "rejected", exc.code
            raise self.backends_down(caller, exc) from None
        except BaseException as exc:
            error = _error_type(exc)
            raise
        finally:
            self._streams.pop(stream_id, None)
            # record first, before any await: a client that left cancels this task again at every await
            # (anyio's cancel scopes), and a record behind one would be lost with its quota settlement
            prompt, completion = self._record(admission, req, stats, delivered, prefill, status, parts, journal)
            if self.metrics is not None:
                self._observe(admission, stats, prompt, completion, status, error, first)
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                await self._unlease(lease)

    def _observe(self, admission: Admission, stats: GenerationStats | None, prompt: int, completion: int, status: str,
                 error: str | None, first: float | None) -> None:
        """One generation for the Prometheus metrics (the same token figures as the usage record)."""
        assert self.metrics is not None
        end = time.perf_counter()
        ttft = first - admission.started if first is not None else None
        tpot = (end - first) / (completion - 1) if first is not None and completion > 1 else None
        self.metrics.generation(model=admission.model, endpoint=admission.endpoint, course_id=admission.course_id,
                                status=status, error=error, prompt_tokens=prompt, output_tokens=completion,
                                ttft=ttft, tpot=tpot, duration=end - admission.started,
                                queue_wait=stats.queue_ns / 1e9 if stats is not None else None)

    def _journal(self, admission: Admission) -> str:
        """Journal the start of a generation (a "running" usage row, written with the next batch unless
        its end comes first: flexi.access.usage); returns the id its end carries. A random id, never the
        client's X-Request-ID: a client chooses that text, and usage rows hold no text a person wrote."""
        principal = admission.principal
        journal = uuid.uuid4().hex
        self.usage.submit(UsageEntry(
            user_pseudonym=principal.pseudonym, key_id=principal.key_id, course_id=admission.course_id,
            model=admission.model, endpoint=admission.endpoint, prompt_tokens=0, completion_tokens=0, queue_ms=0,
            generation_ms=0, status=RUNNING, **admission.marks, request_id=journal,
            replica=self.settings.replica_name, end_user=admission.caller.end_user))
        return journal

    def _record(self, admission: Admission, req: GenerationRequest, stats: GenerationStats | None, delivered: int,
                prefill: int, status: str, parts: list[str] | None, journal: str | None = None) -> tuple[int, int]:
        """Submit the usage record (the end of the journaled start `journal`); returns the (prompt,
        completion) tokens billed."""
        if stats is not None:
            prompt, completion = stats.prompt_tokens, stats.completion_tokens
            queue_ms, gen_ms = stats.queue_ns // 1_000_000, (stats.prompt_eval_ns + stats.eval_ns) // 1_000_000
        else:  # cancelled or failed: pay for the prefill a runner slot took on, and what was delivered
            completion = delivered
            prompt = prefill or (math.ceil(len(req.prompt.encode("utf-8")) / 4) if delivered else 0)
            queue_ms, gen_ms = 0, int((time.perf_counter() - admission.started) * 1000)
        self.usage.submit(UsageEntry(
            user_pseudonym=admission.principal.pseudonym, key_id=admission.principal.key_id,
            course_id=admission.course_id, model=admission.model, endpoint=admission.endpoint,
            prompt_tokens=prompt, completion_tokens=completion, queue_ms=queue_ms, generation_ms=gen_ms,
            status=status, reservation=admission.reservation, **admission.marks,
            prompt_text=req.prompt if parts is not None else None,
            response_text="".join(parts) if parts is not None else None,
            request_id=journal, replica=self.settings.replica_name if journal else None,
            end_user=admission.caller.end_user))
        return prompt, completion

    async def embed(self, caller: Caller, model: str, inputs: list[str], run: Callable[[], Awaitable[T]],
                    tokens_of: Callable[[T], int]) -> T:
        """Admit an embedding request (prompt tokens only), run it, record it."""
        t0 = time.perf_counter()
        bound = sum(len(text.encode("utf-8")) + 1 for text in inputs)
        admission = await self._admit(caller, self.limits(caller.principal, model), bound, 0, model, embedding=True)
        caller.timings.add_gate((time.perf_counter() - t0) * 1000)
        status, tokens, error = "error", 0, None
        lease: Lease | None = None
        try:
            lease = await self._lease(caller, model, self.max_concurrent_for(caller.principal))
            result = await run()
            tokens, status = tokens_of(result), "ok"
            return result
        except TooManyRequests as exc:
            status, error = "rejected", exc.code
            raise self.too_many(caller, exc, model) from None
        except BackendsDown as exc:
            status, error = "rejected", exc.code
            raise self.backends_down(caller, exc) from None
        except BaseException as exc:
            error = _error_type(exc)
            raise
        finally:
            self.usage.submit(self._entry(admission, status=status, prompt_tokens=tokens,  # before any await
                                          generation_ms=int((time.perf_counter() - admission.started) * 1000)))
            if self.metrics is not None:
                self.metrics.embedding(model=model, endpoint=admission.endpoint, course_id=admission.course_id,
                                       status=status, error=error, tokens=tokens)
            with contextlib.suppress(Exception):
                await self._unlease(lease)

    def _entry(self, admission: Admission, *, status: str, prompt_tokens: int = 0, generation_ms: int = 0) -> UsageEntry:
        """The usage record of a request that produced no completion figures (loads, embeddings,
        requests that ended before generating)."""
        principal = admission.principal
        return UsageEntry(user_pseudonym=principal.pseudonym, key_id=principal.key_id, course_id=admission.course_id,
                          model=admission.model, endpoint=admission.endpoint, prompt_tokens=prompt_tokens,
                          completion_tokens=0, queue_ms=0, generation_ms=generation_ms, status=status,
                          reservation=admission.reservation, **admission.marks, end_user=admission.caller.end_user)

    # --- admission ---------------------------------------------------------------------
    async def _admit(self, caller: Caller, limits: Limits, prompt_bound: int, max_output: int,
                     model: str, phase: str = "all", embedding: bool = False) -> Admission:
        principal = caller.principal
        course_id = await self._course_of(caller)
        billing = caller.billing
        endpoint = billing.endpoint if billing is not None and billing.endpoint else caller.endpoint
        marks = _marks(billing)
        if principal.user_id is None or self.quotas.cached_limits(principal, course_id) == []:
            # nothing to count: no thread, no write
            return Admission(caller, course_id, limits, Reservation(), endpoint, model, **marks)
        admitting = asyncio.get_running_loop().run_in_executor(
            self.quotas.executor, functools.partial(self.quotas.admit, principal, course_id, prompt_bound, max_output,
                                                    phase=phase, end_user=caller.end_user))
        try:
            reservation = await asyncio.shield(admitting)  # the thread commits even if the client leaves now...
        except asyncio.CancelledError:
            admitting.add_done_callback(
                lambda done: self._release(done, principal, course_id, endpoint, model, marks, caller.end_user))
            raise  # ...so its reservation is handed back once it is in
        except QuotaRefusal as refusal:
            raise self._refused(caller, refusal, course_id, endpoint, model, marks, embedding) from None
        return Admission(caller, course_id, limits, reservation, endpoint, model, **marks)

    def _refused(self, caller: Caller, refusal: QuotaRefusal, course_id: int | None,
                 endpoint: str, model: str, marks: dict[str, int | None] | None = None,
                 embedding: bool = False) -> AccessError:
        principal = caller.principal
        self.usage.submit(UsageEntry(  # refusals are counted too: admins see who hits which limit
            user_pseudonym=principal.pseudonym, key_id=principal.key_id, course_id=course_id, model=model,
            endpoint=endpoint, prompt_tokens=0, completion_tokens=0, queue_ms=0, generation_ms=0, status="rejected",
            **(marks or {}), end_user=caller.end_user))
        error = self._refusal(caller.locale, refusal)
        if self.metrics is not None and embedding:
            self.metrics.embedding(model=model, endpoint=endpoint, course_id=course_id, status="rejected",
                                   error=error.code, tokens=0)
        elif self.metrics is not None:
            self.metrics.refused(model=model, endpoint=endpoint, course_id=course_id, status="rejected",
                                 error=error.code)
        return error

    def _release(self, done: asyncio.Future[Reservation], principal: Principal, course_id: int | None, endpoint: str,
                 model: str, marks: dict[str, int | None] | None = None, end_user: str | None = None) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        self.usage.submit(UsageEntry(user_pseudonym=principal.pseudonym, key_id=principal.key_id, course_id=course_id,
                                     model=model, endpoint=endpoint, prompt_tokens=0, completion_tokens=0, queue_ms=0,
                                     generation_ms=0, status="cancelled", reservation=done.result(),
                                     **(marks or {}), end_user=end_user))

    def _refusal(self, locale: str, refusal: QuotaRefusal) -> AccessError:
        lim = refusal.limit
        retry = max(1, math.ceil((refusal.resets_at - utcnow()).total_seconds()))
        reset = refusal.resets_at.strftime("%H:%M UTC" if lim.window != "week" else "%Y-%m-%d %H:%M UTC")
        text = i18n.text(f"quota_{lim.name}", locale, limit=lim.value, retry=retry, reset=reset,
                             subject=i18n.text(f"subject_{lim.subject_kind}", locale))
        return quota_exceeded(text, retry, limit=lim.name, scope=lim.subject_kind,
                              resets_at=iso_z(refusal.resets_at))

    async def _course_of(self, caller: Caller) -> int | None:
        if caller.billing is not None:  # the route decided (a course assistant bills its course)
            return caller.billing.course_id
        principal = caller.principal
        privileged = principal.is_admin or principal.local
        if principal.key_course_id is not None:
            if not privileged and principal.key_course_id not in principal.courses:
                # the owner left the course: its key no longer spends the course's budget
                raise forbidden(i18n.text("course_unknown", caller.locale, course=principal.key_course_id),
                                code="course_unknown")
            return principal.key_course_id
        name = caller.course
        if not name:
            return None
        course_id = await self._course_id(name) if len(name) <= 100 else None
        if course_id is None or not (privileged or course_id in principal.courses):
            raise forbidden(i18n.text("course_unknown", caller.locale, course=name[:100]), code="course_unknown")
        return course_id

    async def _course_id(self, name: str) -> int | None:
        cached = self._courses.get(name)
        if cached is not None and time.monotonic() - cached[1] < 30:
            return cached[0]

        def lookup() -> int | None:
            with self.engine.connect() as conn:
                return conn.scalar(select(Course.id).where(Course.name == name[:100]))

        found = await asyncio.to_thread(lookup)
        if found is not None:  # only hits are cached, and only so many: header values are the client's
            if len(self._courses) >= 1000:
                self._courses.clear()
            self._courses[name] = (found, time.monotonic())
        return found

    # --- revocation ----------------------------------------------------------------------
    def end_streams(self, user_id: int | None = None, key_id: int | None = None) -> int:
        """End the open streams of a user or key at their next token (after revoke/demote/erase)."""
        n = 0
        for handle in list(self._streams.values()):
            p = handle.principal
            if (user_id is not None and p.user_id == user_id) or (key_id is not None and p.key_id == key_id):
                handle.revoked = True
                n += 1
        return n

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="flexi-access-watch")

    async def _watch(self) -> None:
        """While streams are open, notice revocations made elsewhere (CLI, another replica) within a second."""
        while self._streams:
            await asyncio.sleep(WATCH_INTERVAL)
            handles = [h for h in list(self._streams.values()) if h.principal.user_id is not None and not h.revoked]
            if not handles:
                continue
            try:
                gone_users, gone_keys = await asyncio.to_thread(self._revoked, handles)
            except Exception:
                log.exception("could not check for revoked access")
                continue
            for h in handles:
                if h.principal.user_id in gone_users or h.principal.key_id in gone_keys:
                    h.revoked = True

    def _revoked(self, handles: list[_Stream]) -> tuple[set[int], set[int]]:
        user_ids = {h.principal.user_id for h in handles}
        key_ids = {h.principal.key_id for h in handles if h.principal.key_id is not None}
        now = utcnow()
        with self.engine.connect() as conn:
            users = {uid: (role, disabled) for uid, role, disabled in
                     conn.execute(select(User.id, User.role, User.disabled_at).where(User.id.in_(user_ids)))}
            bad_keys = set(conn.scalars(select(ApiKey.id).where(ApiKey.id.in_(key_ids), or_(
                ApiKey.revoked_at.is_not(None), ApiKey.expires_at <= now)))) if key_ids else set()
            known_keys = set(conn.scalars(select(ApiKey.id).where(ApiKey.id.in_(key_ids)))) if key_ids else set()
        gone_users = set()
        for h in handles:
            uid = h.principal.user_id
            row = users.get(uid)  # type: ignore[arg-type]
            if row is None or row[1] is not None or self.authn.effective_role(h.principal.subject, row[0]) != h.principal.role:
                gone_users.add(uid)
        return gone_users, bad_keys | (key_ids - known_keys)  # type: ignore[return-value]

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher


def _error_type(exc: BaseException | None) -> str | None:
    """The metrics' error type: the API error code (bounded: Flexi's own codes), "internal" otherwise;
    None for a client that left (not an error of the service)."""
    if exc is None or isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
        return None
    return exc.code if isinstance(exc, EngineError) else "internal"
