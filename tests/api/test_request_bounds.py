"""Issue 11, item 3: request size bounds that match the work.

A student key must not be able to make the server do unbounded work or evict other people's
models with one request: a huge num_ctx (reload at the model's training context), a huge
num_predict / max_tokens, hundreds of messages or megabytes of prompt, absurd sampling values,
NaN/Infinity. One real server with FLEXI_AUTH=on serves the end-to-end tests; the memory
estimate is checked against the runner's measured memory (benchmarks/results/memory-estimate.json).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from flexi.scheduler.memory import estimate_runner_bytes
from flexi.store.gguf_meta import read_gguf_info
from flexi.store.store import default_model_file
from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server

STUDENT_OUTPUT_CAP = 5
COPY = "bounds-copy:latest"  # a second name for the default model: its own runner, loaded only when used


@dataclass
class Campus:
    srv: RunningServer
    admin: dict[str, str]
    student: dict[str, str]


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    env = {"FLEXI_AUTH": "on", "FLEXI_ADMINS": "boss",
           "FLEXI_ROLE_MAX_OUTPUT": json.dumps({"student": STUDENT_OUTPUT_CAP})}
    srv = start_server(tmp_path_factory.mktemp("bounds") / "home", env)
    db = ServerDB(srv.home)
    try:
        admin = {"Authorization": f"Bearer {db.add_key(db.add_user('boss'))[1]}"}
        student = {"Authorization": f"Bearer {db.add_key(db.add_user('stud', role='student'))[1]}"}
        r = httpx.post(srv.url + "/api/copy", headers=admin, json={"source": MODEL, "destination": COPY})
        assert r.status_code == 200, r.text
        yield Campus(srv, admin, student)
    finally:
        db.close()
        stop_server(srv)


def _ps(campus: Campus) -> dict[str, int]:
    models = httpx.get(campus.srv.url + "/api/ps", headers=campus.admin).json()["models"]
    return {m["name"]: m["context_length"] for m in models}


def _post(campus: Campus, path: str, body: dict | str, who: str = "student") -> httpx.Response:
    headers = {**getattr(campus, who), "Content-Type": "application/json"}
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(campus.srv.url + path, headers=headers, content=content, timeout=300)


# --- A: context and output caps ----------------------------------------------------------------
def test_student_num_ctx_131072_does_not_reload_the_model(campus: Campus) -> None:
    gen = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}}
    assert _post(campus, "/api/generate", gen).status_code == 200
    default_ctx = _ps(campus)[MODEL]
    assert default_ctx == 4096  # FLEXI_CONTEXT_LENGTH; SmolLM2 was trained for 8192
    r = _post(campus, "/api/generate", {**gen, "options": {"num_predict": 1, "num_ctx": 131072}})
    assert r.status_code == 200, r.text  # clamped silently, like Ollama
    assert _ps(campus)[MODEL] == default_ctx  # not reloaded at the training context
    r = _post(campus, "/api/embed", {"model": MODEL, "input": "hi", "options": {"num_ctx": 131072}})
    assert r.status_code == 200, r.text
    assert _ps(campus)[MODEL] == default_ctx


def test_student_huge_num_predict_is_capped_at_the_role_default(campus: Campus) -> None:
    client = ollama.Client(host=campus.srv.url, headers=campus.student)
    chunks = 0
    for part in client.generate(model=MODEL, prompt="Count: 1, 2, 3,", stream=True,
                                options={"num_predict": 10**9, "temperature": 0, "ignore_eos": True}):
        if part.response:
            chunks += 1
            assert chunks <= STUDENT_OUTPUT_CAP, "generated past the student's output cap"
        if part.done:
            assert part.eval_count == STUDENT_OUTPUT_CAP and part.done_reason == "length"


def test_student_huge_max_tokens_is_capped_at_the_role_default(campus: Campus) -> None:
    oa = openai.OpenAI(base_url=campus.srv.url + "/v1", api_key=campus.student["Authorization"].split()[1])
    stream = oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count to 100"}],
                                        max_tokens=2**31 - 1, temperature=0, stream=True,
                                        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    pieces, finish, usage = 0, None, None
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                assert pieces <= STUDENT_OUTPUT_CAP, "generated past the student's output cap"
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == STUDENT_OUTPUT_CAP and finish == "length"


def test_fresh_install_has_role_caps_that_policies_only_narrow() -> None:
    from flexi.access.policy import Limits, PolicyBook, allowed_context
    from flexi.access.principal import Principal
    from flexi.config import Settings

    settings = Settings()
    book = PolicyBook(None, "open", settings.role_max_context, settings.role_max_output)  # type: ignore[arg-type]
    book.rules = lambda: []  # type: ignore[method-assign]
    student = Principal(user_id=1, subject="s", pseudonym="p", role="student", locale="en")
    admin = Principal(user_id=2, subject="a", pseudonym="q", role="admin", locale="en")
    assert book.decide(student, MODEL) == Limits(8192, 4096)
    assert book.decide(admin, MODEL) == Limits(None, None)
    # non-admins never get more than the context the model is loaded with or configured for
    assert allowed_context(student, 131072, Limits(8192, 4096), 4096) == 4096
    assert allowed_context(admin, 131072, Limits(None, None), 4096) == 131072


# --- B: messages and prompt size -----------------------------------------------------------------
def test_600_messages_is_400_in_both_dialects(campus: Campus) -> None:
    messages = [{"role": "user", "content": "hi"}] * 600
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=campus.srv.url, headers=campus.student).chat(model=MODEL, messages=messages)
    assert caught.value.status_code == 400 and "too many messages" in caught.value.error
    oa = openai.OpenAI(base_url=campus.srv.url + "/v1", api_key=campus.student["Authorization"].split()[1])
    with pytest.raises(openai.BadRequestError) as bad:
        oa.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)  # type: ignore[arg-type]
    body = bad.value.body
    assert isinstance(body, dict) and "500" in body["message"] and body["param"] == "messages"


def test_oversize_prompt_is_400_before_the_model_is_even_loaded(campus: Campus) -> None:
    assert COPY not in _ps(campus)
    huge = "word " * 200_000  # 1 MB: no tokenizer fits that into a 4096-token context
    r = _post(campus, "/api/generate", {"model": COPY, "prompt": huge, "stream": False})
    assert r.status_code == 400 and "too long" in r.json()["error"]
    r = _post(campus, "/v1/completions", {"model": COPY, "prompt": huge})
    assert r.status_code == 400 and "too long" in r.json()["error"]["message"]
    r = _post(campus, "/api/embed", {"model": COPY, "input": huge, "truncate": False})
    assert r.status_code == 400 and "too long" in r.json()["error"]
    assert COPY not in _ps(campus)  # refused before queueing: no runner loaded (and nothing tokenised)


def test_2049_embedding_inputs_is_400_in_both_dialects(campus: Campus) -> None:
    inputs = ["x"] * 2049
    r = _post(campus, "/api/embed", {"model": MODEL, "input": inputs})
    assert r.status_code == 400 and "too many inputs" in r.json()["error"]
    r = _post(campus, "/v1/embeddings", {"model": MODEL, "input": inputs})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


# --- C: sampling values -------------------------------------------------------------------------
@pytest.mark.parametrize("option", [{"top_k": 10**9}, {"repeat_penalty": 1e30}, {"seed": 10**30}])
def test_absurd_sampling_values_are_400_in_both_dialects(campus: Campus, option: dict[str, float]) -> None:
    r = _post(campus, "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False,
                                        "options": {"num_predict": 1, **option}})
    field = next(iter(option))
    assert r.status_code == 400 and field in r.json()["error"], r.text
    r = _post(campus, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                               "max_tokens": 1, **option})
    assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text


# NaN and -Infinity in these fields were already refused by their ge/le bounds before issue 11; +Infinity
# (literal or an overflowing 1e999) passed as repeat_penalty, which had no upper bound.
@pytest.mark.parametrize("literal", ["Infinity", "1e999"])
def test_nan_and_infinity_literals_are_400_in_both_dialects(campus: Campus, literal: str) -> None:
    r = _post(campus, "/api/generate", '{"model": "%s", "prompt": "Hi", "stream": false, '
                                       '"options": {"num_predict": 1, "repeat_penalty": %s}}' % (MODEL, literal))
    assert r.status_code == 400 and isinstance(r.json()["error"], str), r.text
    r = _post(campus, "/api/chat", '{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], "stream": false, '
                                   '"format": {"type": "object", "properties": {"a": {"type": "number", "maximum": %s}}}, '
                                   '"options": {"num_predict": 1}}' % (MODEL, literal))
    assert r.status_code == 400, r.text
    r = _post(campus, "/v1/chat/completions", '{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], '
                                              '"max_tokens": 1, "frequency_penalty": %s}' % (MODEL, literal))
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text


# --- D: the memory estimate ---------------------------------------------------------------------
def test_memory_estimate_covers_the_measured_runner_rss() -> None:
    """At 2k, 8k and 32k context (1 and 4 slots) the admission estimate is within -5..+15 % of the worst case a
    runner reaches: measured after an embedding that fills the embedder's context (capped at 2048 tokens; one
    embedding request creates its buffers, and they stay)."""
    from flexi.scheduler.memory import GENERATION_OVERHEAD, kv_cache_bytes

    results = Path(__file__).parents[2] / "benchmarks" / "results" / "memory-estimate.json"
    saved = json.loads(results.read_text())
    model = default_model_file()
    assert model is not None and model.name == saved["model"] and model.stat().st_size == saved["model_bytes"]
    info = read_gguf_info(model)
    for row in saved["measurements"]:
        ctx, slots = row["num_ctx"], row["num_parallel"]
        case = (ctx, slots)
        generation = saved["model_bytes"] + kv_cache_bytes(info, ctx, slots) + GENERATION_OVERHEAD
        assert 0 <= generation - row["peak_rss_generated"] <= 0.15 * row["peak_rss_generated"], case
        estimate = estimate_runner_bytes(saved["model_bytes"], info, ctx, slots)
        assert -0.05 <= (estimate - row["worst_case"]) / row["worst_case"] <= 0.15, case
        assert estimate >= max(row["peak_rss"], row.get("peak_rss_full_embed") or 0), case
    assert {2048, 8192, 32768} <= {row["num_ctx"] for row in saved["measurements"]}
    assert any(row.get("peak_rss_full_embed") for row in saved["measurements"])
