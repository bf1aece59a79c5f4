"""The access gate observes every request once for /metrics: outcome, error type, tokens, latencies."""

from __future__ import annotations

import pytest

from flexi.access.errors import AccessError
from flexi.access.service import AccessService
from flexi.engine.types import BadRequest, RunnerCrashed, TextChunk, TooManyRequests
from flexi.observability.metrics import Metrics
from tests.access.test_gate import MODEL, _caller, _events, _req, _stats, _usage, access, db  # noqa: F401 (fixtures)
from tests.access_helpers import ServerDB
from tests.metrics_helpers import parse, total


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
