"""The generation service with a fake backend and the real access layer: what it decides, in which
order, and that nothing below it changes a resolved request."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from flexi.access.caller import Caller
from flexi.access.credentials import Credential
from flexi.access.service import AccessService
from flexi.service.options import ModelOptions
from flexi.config import load_settings
from flexi.engine.types import BadRequest, GenerationRequest, GenerationStats, Prefill, TextChunk
from flexi.service.generation import ChatPrompt, Draft, GenerationService, TextPrompt
from flexi.store.gguf_meta import GGUFInfo
from flexi.store.names import parse_model_name
from flexi.store.store import ModelRecord
from tests.access_helpers import ServerDB

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"


def _record(name: str = "tiny:latest") -> ModelRecord:
    info = GGUFInfo(architecture="llama", chat_template=TEMPLATE, capabilities=["completion"], context_length=8192)
    return ModelRecord(name=name, model_name=parse_model_name(name), digest="ab" * 32, size=1,
                       modified_at=datetime(2025, 1, 2, tzinfo=timezone.utc), model_path=Path("/nonexistent"), info=info)


class FakeBackend:
    """Records what it is asked to run and answers with a prefill, two pieces and the figures."""

    def __init__(self) -> None:
        self.requests: list[tuple[GenerationRequest, ModelRecord | None]] = []

    async def generate(self, req: GenerationRequest, record: ModelRecord | None = None) -> AsyncIterator[Any]:
        self.requests.append((req, record))
        yield Prefill(5)
        yield TextChunk("Hal", 1)
        yield TextChunk("lo", 2)
        yield GenerationStats(finish_reason="stop", prompt_tokens=5, completion_tokens=2, prompt_eval_ns=1, eval_ns=1)

    def context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        return min(num_ctx or 4096, 8192)

    def context_ceiling(self, record: ModelRecord) -> int:
        return 4096


@pytest_asyncio.fixture(loop_scope="function")  # the usage writer's task must run on the test's loop
async def world(tmp_path: Path) -> AsyncIterator[tuple[GenerationService, FakeBackend, AccessService, ServerDB]]:
    settings = load_settings(home=tmp_path, auth="on", role_max_output={"student": 100})
    access = AccessService.open(settings)
    await access.start()
    db = ServerDB(tmp_path)
    backend = FakeBackend()
    yield GenerationService(settings, None, access.gate, lambda record: backend), backend, access, db  # type: ignore[arg-type]
    await access.close()
    db.close()


def _caller(access: AccessService, db: ServerDB, subject: str, role: str = "student") -> Caller:
    user_id = db.add_user(subject, role=role)
    principal = access.authn.authenticate(Credential("key", db.add_key(user_id, name="k")[1]))
    assert principal is not None
    return Caller(principal, "en", f"user:{user_id}", "/api/chat", "t")


async def _run(service: GenerationService, caller: Caller, draft: Draft) -> list[Any]:
    return [ev async for ev in await service.generate(caller, _record(), draft)]


async def test_every_limit_is_decided_before_the_backend_sees_the_request(world: Any) -> None:
    service, backend, access, db = world
    student = _caller(access, db, "stud")
    draft = Draft(ChatPrompt([{"role": "user", "content": "hi"}]), options=ModelOptions(num_ctx=100_000, num_predict=-1),
                  keep_alive="1h", end_user="someone")
    events = await _run(service, student, draft)
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["Hal", "lo"]
    assert not any(isinstance(e, Prefill) for e in events)  # billing facts stop at the gate
    [(req, record)] = backend.requests
    assert record is not None and record.name == "tiny:latest"  # looked up once, handed down
    assert req.prompt == "<user>hi<assistant>"
    assert req.num_ctx == 4096  # a student cannot make the model reload beyond its configuration
    assert req.max_tokens == 100  # "until the context is full" became the role's output cap
    assert req.keep_alive is None  # only admins choose how long a model stays loaded
    assert req.user == student.identity  # a student's end-user id does not split their turn
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.max_tokens = 10**6  # type: ignore[misc]


async def test_an_admin_keeps_their_keep_alive_and_unlimited_output(world: Any) -> None:
    service, backend, access, db = world
    admin = _caller(access, db, "root", role="admin")
    await _run(service, admin, Draft(TextPrompt("hi", raw=True), options=ModelOptions(num_predict=-1), keep_alive="1h"))
    [(req, _)] = backend.requests
    assert req.keep_alive == 3600 and req.max_tokens == min(service.settings.max_predict, 4096)  # the usable context


async def test_a_request_refused_while_rendering_still_counts_and_is_recorded(world: Any) -> None:
    service, backend, access, db = world
    student = _caller(access, db, "bad")
    with pytest.raises(BadRequest):
        await service.generate(student, _record(), Draft(ChatPrompt([{"role": "", "content": "x"}])))
    await access.usage.flush()
    [record] = db.usage(db.pseudonym("bad"))
    assert record.status == "error" and not backend.requests


async def test_the_augment_step_runs_after_admission_and_its_messages_are_rendered(world: Any) -> None:
    service, backend, access, db = world
    student = _caller(access, db, "reader")
    seen: list[Caller] = []

    async def retrieve(caller: Caller, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(caller)
        return [{"role": "system", "content": "[page 3] notes"}, *messages]

    await _run(service, student, Draft(ChatPrompt([{"role": "user", "content": "q"}], augment=retrieve)))
    assert seen == [student]
    assert backend.requests[0][0].prompt == "<system>[page 3] notes<user>q<assistant>"


async def test_a_prompt_that_cannot_fit_the_usable_context_is_refused_before_the_backend(world: Any) -> None:
    service, backend, access, db = world
    student = _caller(access, db, "long")
    with pytest.raises(BadRequest, match="too long"):
        await service.generate(student, _record(), Draft(TextPrompt("x" * (4096 * service.settings.max_prompt_bytes_per_token + 1), raw=True)))
    assert not backend.requests
