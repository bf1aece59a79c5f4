"""The access gate driven directly with `Caller`s: no HTTP request, no server, a real database.

Each test builds the real access layer on a temporary SQLite home and calls the gate the way the
generation service does (admit → reserve → meter, or release_unclaimed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from flexi.access.caller import Billing, Caller
from flexi.access.credentials import Credential
from flexi.access.errors import AccessError
from flexi.access.service import AccessService
from flexi.config import load_settings
from flexi.engine.types import (
    BadRequest,
    GenerationRequest,
    GenerationStats,
    ModelNotFound,
    Prefill,
    RunnerCrashed,
    TextChunk,
    TooManyRequests,
)
from flexi.observability.metrics import Metrics
from tests.access_helpers import ServerDB
from tests.metrics_helpers import parse, total

MODEL = "smollm2:135m"


@pytest_asyncio.fixture(loop_scope="function")  # the usage writer's task must run on the test's loop
async def access(tmp_path: Path) -> AsyncIterator[AccessService]:
    service = AccessService.open(load_settings(home=tmp_path, auth="on"))
    await service.start()
    yield service
    await service.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ServerDB]:
    helper = ServerDB(tmp_path)
    yield helper
    helper.close()


def _caller(access: AccessService, db: ServerDB, subject: str, *, role: str = "student", locale: str = "en",
            course: str | None = None, **key: Any) -> Caller:
    user_id = db.add_user(subject, role=role)
    _, token = db.add_key(user_id, name="k", **key)
    principal = access.authn.authenticate(Credential("key", token))
    assert principal is not None
    return Caller(principal=principal, locale=locale, identity=f"user:{user_id}", endpoint="/api/chat",
                  request_id="t", course=course)


async def _events(*items: Any) -> AsyncIterator[Any]:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


async def _usage(access: AccessService, db: ServerDB, subject: str) -> list[Any]:
    """The usage records of `subject` once the writer has flushed (it writes off the request path)."""
    await access.usage.flush()
    return db.usage(db.pseudonym(subject))


def _stats(prompt: int = 7, completion: int = 2) -> GenerationStats:
    return GenerationStats(finish_reason="stop", prompt_tokens=prompt, completion_tokens=completion,
                           prompt_eval_ns=1, eval_ns=1)


def _req(prompt: str = "hello") -> GenerationRequest:
    return GenerationRequest(model=MODEL, prompt=prompt, max_tokens=8)


async def test_a_metered_stream_is_recorded_once_with_the_runners_figures(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "alice")
    gate = access.gate
    admission = await gate.admit(caller, MODEL, prompt_bound=20)
    admission = await gate.reserve(admission, 10, 8)
    out = [ev async for ev in gate.meter(admission, _req(), _events(Prefill(7), TextChunk("hi", 1), _stats()))]
    assert not any(isinstance(ev, Prefill) for ev in out)  # billing facts stop at the gate
    [record] = await _usage(access, db, "alice")
    assert (record.status, record.prompt_tokens, record.completion_tokens, record.endpoint) == ("ok", 7, 2, "/api/chat")
    assert caller.timings.gate_ms is not None and caller.timings.gate_ms > 0


async def test_a_stream_that_fails_before_its_first_token_pays_for_the_prefill(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "bob")
    admission = await access.gate.admit(caller, MODEL, prompt_bound=20)
    with pytest.raises(RuntimeError):
        async for _ in access.gate.meter(admission, _req(), _events(Prefill(42), RuntimeError("runner gone"))):
            pass
    [record] = await _usage(access, db, "bob")
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("error", 42, 0)


async def test_an_admission_no_stream_claimed_is_recorded_as_an_error(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "carol")
    admission = await access.gate.admit(caller, MODEL, prompt_bound=5)
    access.gate.release_unclaimed(admission)  # e.g. the template failed to render
    [record] = await _usage(access, db, "carol")
    assert (record.status, record.prompt_tokens) == ("error", 0)


async def test_rate_limit_refusal_speaks_the_callers_language(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "dora", locale="de")
    db.set_quota("user", caller.principal.user_id, requests_per_minute=1)  # type: ignore[arg-type]
    access.quotas.forget()
    await access.gate.admit(caller, MODEL, prompt_bound=5)
    with pytest.raises(AccessError) as refused:
        await access.gate.admit(caller, MODEL, prompt_bound=5)
    assert refused.value.status == 429 and "Minute" in refused.value.message  # German text


async def test_the_schedulers_per_person_cap_becomes_a_localized_429_and_is_not_billed(
        access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "emil", locale="de")
    admission = await access.gate.admit(caller, MODEL, prompt_bound=5)
    with pytest.raises(AccessError) as refused:
        async for _ in access.gate.meter(admission, _req(), _events(TooManyRequests(4))):
            pass
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "2"
    assert "gleichzeitig" in refused.value.message or "Anfragen" in refused.value.message
    [record] = await _usage(access, db, "emil")
    assert (record.status, record.prompt_tokens) == ("rejected", 0)


async def test_a_course_named_by_the_client_must_be_one_of_theirs(access: AccessService, db: ServerDB) -> None:
    outsider = _caller(access, db, "fritz", course="ml-101")
    db.add_course("ml-101", {})
    with pytest.raises(AccessError) as refused:
        await access.gate.admit(outsider, MODEL, prompt_bound=5)
    assert (refused.value.status, refused.value.code) == (403, "course_unknown")


async def test_billing_chosen_by_the_route_wins_over_the_header(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "gina", course="no-such-course")
    course_id = db.add_course("assistants-course", {})
    billed = caller.with_billing(Billing(course_id=course_id, assistant_id=None, endpoint="/assistants/chat"))
    admission = await access.gate.admit(billed, MODEL, prompt_bound=5)  # the header is not even looked at
    assert (admission.course_id, admission.endpoint) == (course_id, "/assistants/chat")
    assert caller.billing is None  # the caller itself is unchanged (immutable)


async def test_a_forbidden_model_looks_missing(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "hans")
    db.add_policy("smollm2*", allowed_roles=["teacher"])
    access.policies.invalidate()
    with pytest.raises(ModelNotFound):
        await access.gate.admit(caller, MODEL, prompt_bound=5)
    assert not access.gate.visible(caller.principal, MODEL)


async def test_revoking_a_key_ends_its_open_stream_at_the_next_event(access: AccessService, db: ServerDB) -> None:
    caller = _caller(access, db, "ida")
    admission = await access.gate.admit(caller, MODEL, prompt_bound=5)
    stream = access.gate.meter(admission, _req(), _events(TextChunk("a", 1), TextChunk("b", 2), _stats()))
    assert isinstance(await stream.__anext__(), TextChunk)
    assert access.gate.end_streams(key_id=caller.principal.key_id) == 1
    with pytest.raises(AccessError) as ended:
        await stream.__anext__()
    assert (ended.value.status, ended.value.code) == (403, "access_revoked")


# --- metrics (/metrics): the gate observes every request once ----------------------------------------------
def _samples(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
    return parse(metrics.exposition().decode())


async def test_a_finished_stream_is_counted_once_with_the_usage_records_tokens(access: AccessService,
                                                                              db: ServerDB) -> None:
    metrics = access.gate.metrics = Metrics()
    caller = _caller(access, db, "alice")
    admission = await access.gate.admit(caller, MODEL, prompt_bound=20)
    async for _ in access.gate.meter(admission, _req(), _events(TextChunk("hi", 1), TextChunk(" there", 2),
                                                                _stats(prompt=7, completion=2))):
        pass
    s = _samples(metrics)
    assert total(s, "flexi_requests_total", model=MODEL, endpoint="/api/chat", status="ok", course="none") == 1
    assert total(s, "flexi_prompt_tokens_total", model=MODEL) == 7
    assert total(s, "flexi_generated_tokens_total", model=MODEL) == 2
    assert total(s, "flexi_time_to_first_token_seconds_count", model=MODEL) == 1
    assert total(s, "flexi_time_per_output_token_seconds_count", model=MODEL) == 1
    assert total(s, "flexi_queue_wait_seconds_count", model=MODEL) == 1
    assert total(s, "flexi_request_errors_total") == 0
    [record] = await _usage(access, db, "alice")  # the usage record is unchanged by the metrics
    assert (record.prompt_tokens, record.completion_tokens) == (7, 2)


async def test_errors_are_counted_by_type(access: AccessService, db: ServerDB) -> None:
    metrics = access.gate.metrics = Metrics()
    caller = _caller(access, db, "bob")
    gate = access.gate
    with pytest.raises(RunnerCrashed):
        async for _ in gate.meter(await gate.admit(caller, MODEL, prompt_bound=5), _req(), _events(RunnerCrashed())):
            pass
    with pytest.raises(AccessError):  # the scheduler's per-person cap becomes the gate's 429
        async for _ in gate.meter(await gate.admit(caller, MODEL, prompt_bound=5), _req(), _events(TooManyRequests(4))):
            pass
    gate.release_unclaimed(await gate.admit(caller, MODEL, prompt_bound=5), BadRequest("bad template"))
    s = _samples(metrics)
    assert total(s, "flexi_request_errors_total", type="runner_crashed") == 1
    assert total(s, "flexi_request_errors_total", type="too_many_requests") == 1
    assert total(s, "flexi_request_errors_total", type="invalid_request") == 1
    assert total(s, "flexi_requests_total", status="error") == 2
    assert total(s, "flexi_requests_total", status="rejected") == 1


async def test_a_quota_refusal_is_counted_as_rejected(access: AccessService, db: ServerDB) -> None:
    metrics = access.gate.metrics = Metrics()
    caller = _caller(access, db, "dora")
    db.set_quota("user", caller.principal.user_id, requests_per_minute=1)  # type: ignore[arg-type]
    access.quotas.forget()
    await access.gate.admit(caller, MODEL, prompt_bound=5)
    with pytest.raises(AccessError):
        await access.gate.admit(caller, MODEL, prompt_bound=5)
    s = _samples(metrics)
    assert total(s, "flexi_requests_total", status="rejected") == 1
    assert total(s, "flexi_request_errors_total", type="quota_exceeded") == 1


async def test_embeddings_are_counted_with_their_tokens(access: AccessService, db: ServerDB) -> None:
    metrics = access.gate.metrics = Metrics()
    caller = _caller(access, db, "erin")

    async def run() -> int:
        return 11

    assert await access.gate.embed(caller, MODEL, ["a", "b"], run, lambda tokens: tokens) == 11
    s = _samples(metrics)
    assert total(s, "flexi_embedding_requests_total", model=MODEL, status="ok") == 1
    assert total(s, "flexi_embedding_tokens_total", model=MODEL) == 11
    assert total(s, "flexi_requests_total") == 0  # embeddings are not generations


async def test_without_metrics_the_gate_records_as_before(access: AccessService, db: ServerDB) -> None:
    assert access.gate.metrics is None  # FLEXI_METRICS off: nothing is observed
    caller = _caller(access, db, "fred")
    admission = await access.gate.admit(caller, MODEL, prompt_bound=20)
    async for _ in access.gate.meter(admission, _req(), _events(TextChunk("hi", 1), _stats())):
        pass
    [record] = await _usage(access, db, "fred")
    assert record.status == "ok"
