"""llama.cpp's `llama-server` as a real remote engine behind Flexi, through the official clients.

One llama-server (the default model, 4 slots, --metrics) serves two Flexi models: `llama-chat` over kind
`llamacpp` and `vllm-chat` over kind `vllm` (vLLM speaks the same OpenAI API). `kill-pair` is served by a
second llama-server that a test kills mid-load and by the first one; `remote-dns` by a host that cannot
resolve. Usage must come from llama-server's own token counts, and no usage record may go missing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from sqlalchemy import select

from flexi.db.models import UsageRecord
from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.llama_server import LlamaServer, start_llama_server
from tests.metrics_helpers import parse, total

MESSAGES = [{"role": "user", "content": "Say hi."}]
FEW = {"num_predict": 3, "temperature": 0}
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
COUNT = [{"role": "user", "content": "Count from 1 to 100, one number per line."}]


@dataclass
class Stack:
    flexi: RunningServer
    llama: LlamaServer
    victim_port: int  # the second llama-server's port: the kill test starts it there itself


def _config(llama: str, victim: str) -> str:
    return f'''
[[backends]]
name = "llama"
url = "{llama}/v1"
kind = "llamacpp"
models = {{ "llama-chat" = "smollm2" }}
context_length = 1024

[[backends]]
name = "llama-as-vllm"
url = "{llama}/v1"
kind = "vllm"
models = {{ "vllm-chat" = "smollm2" }}
context_length = 1024

[[backends]]
name = "victim"
url = "{victim}/v1"
kind = "llamacpp"
models = {{ "kill-pair" = "smollm2" }}
max_concurrency = 1
context_length = 1024

[[backends]]
name = "survivor"
url = "{llama}/v1"
kind = "llamacpp"
models = {{ "kill-pair" = "smollm2" }}
max_concurrency = 1
context_length = 1024

[[backends]]
name = "nowhere"
url = "http://flexi-no-such-host.invalid:8080/v1"
kind = "vllm"
models = ["remote-dns"]
'''


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("llama-backend")
    llama = start_llama_server(root / "llama-server.log", free_port(), slots=4, context=4096)
    try:
        victim_port = free_port()
        home = root / "home"
        home.mkdir()
        (home / "config.toml").write_text(_config(llama.url, f"http://127.0.0.1:{victim_port}"))
        flexi = start_server(home, {"FLEXI_BACKEND_HEALTH_INTERVAL": "1"})  # quick probe verdicts for the tests
        try:
            yield Stack(flexi, llama, victim_port)
        finally:
            stop_server(flexi)
    finally:
        llama.stop()


def _direct_usage(llama: LlamaServer, messages: list[dict[str, str]], max_tokens: int) -> tuple[int, int]:
    """llama-server's own (prompt, completion) token counts for `messages`, asked directly."""
    r = httpx.post(llama.url + "/v1/chat/completions", json={"model": "smollm2", "messages": messages,
                                                             "max_tokens": max_tokens, "temperature": 0}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"], r.json()["usage"]["completion_tokens"]


def _records(home: Path, model: str, n: int, timeout: float = 15) -> list[UsageRecord]:
    """The usage records of `model` once at least `n` requests have ended (written in batches, off the request
    path; a request's row reads "running" until its end is written)."""
    db = ServerDB(home)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with db.session() as s:
                records = list(s.scalars(select(UsageRecord).where(UsageRecord.model == model,
                                                                    UsageRecord.status != "running").order_by(UsageRecord.id)))
            if len(records) >= n or time.monotonic() > deadline:
                assert len(records) >= n, f"expected {n} usage records for {model}, found {len(records)}"
                return records
            time.sleep(0.1)
    finally:
        db.close()


def _flexi_metrics(stack: Stack) -> list[tuple[str, dict[str, str], float]]:
    return parse(httpx.get(stack.flexi.url + "/metrics", timeout=10).text)


def _llama_metric(llama: LlamaServer, name: str) -> float:
    text = httpx.get(llama.url + "/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.parametrize("name", ["llama-chat", "vllm-chat"])
def test_ollama_client_on_llama_server(stack: Stack, name: str) -> None:
    client = ollama.Client(host=stack.flexi.url, timeout=120)
    prompt_tokens, _ = _direct_usage(stack.llama, MESSAGES, 3)
    answer = client.chat(model=name, messages=MESSAGES, options=FEW)
    assert answer.message.content and answer.done
    assert answer.prompt_eval_count == prompt_tokens and 1 <= answer.eval_count <= 3
    parts = list(client.chat(model=name, messages=MESSAGES, options=FEW, stream=True))
    assert "".join(p.message.content for p in parts) and parts[-1].done
    assert parts[-1].prompt_eval_count == prompt_tokens and 1 <= parts[-1].eval_count <= 3
    generated = client.generate(model=name, prompt="Say hi.", options=FEW)
    assert generated.response and generated.prompt_eval_count == prompt_tokens  # the same chat turn
    pieces = list(client.generate(model=name, prompt="Say hi.", options=FEW, stream=True))
    assert "".join(p.response for p in pieces) and pieces[-1].done and pieces[-1].prompt_eval_count == prompt_tokens


@pytest.mark.parametrize("name", ["llama-chat", "vllm-chat"])
def test_openai_client_on_llama_server(stack: Stack, name: str) -> None:
    client = openai.OpenAI(base_url=stack.flexi.url + "/v1", api_key="unused", timeout=120)
    prompt_tokens, _ = _direct_usage(stack.llama, MESSAGES, 3)
    done = client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=3, temperature=0)  # type: ignore[arg-type]
    assert done.choices[0].message.content
    assert done.usage is not None and done.usage.prompt_tokens == prompt_tokens
    assert 1 <= done.usage.completion_tokens <= 3
    chunks = list(client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=3, temperature=0,  # type: ignore[arg-type]
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == prompt_tokens
    raw = client.completions.create(model=name, prompt="The capital of France is", max_tokens=3, temperature=0)
    direct = httpx.post(stack.llama.url + "/v1/completions", json={"prompt": "The capital of France is",
                                                                   "max_tokens": 3, "temperature": 0}, timeout=120)
    assert raw.choices[0].text and raw.usage is not None
    assert raw.usage.prompt_tokens == direct.json()["usage"]["prompt_tokens"]


def test_usage_is_llama_servers_own_count(stack: Stack) -> None:
    """One answer: llama-server's counters, Flexi's answer, its /metrics and its usage record agree."""
    model = "llama-chat:latest"
    before = len(_records(stack.flexi.home, model, 0))
    predicted = _llama_metric(stack.llama, "llamacpp:tokens_predicted_total")
    ours = _flexi_metrics(stack)
    answer = ollama.Client(host=stack.flexi.url, timeout=120).chat(model="llama-chat", messages=MESSAGES,
                                                                   options={"num_predict": 5, "temperature": 0})
    assert _llama_metric(stack.llama, "llamacpp:tokens_predicted_total") - predicted == answer.eval_count
    after = _flexi_metrics(stack)
    for metric, count in (("flexi_prompt_tokens_total", answer.prompt_eval_count),
                          ("flexi_generated_tokens_total", answer.eval_count)):
        assert total(after, metric, model=model) - total(ours, metric, model=model) == count
    record = _records(stack.flexi.home, model, before + 1)[-1]
    assert (record.status, record.prompt_tokens, record.completion_tokens) == \
        ("ok", answer.prompt_eval_count, answer.eval_count)


@pytest.mark.parametrize("name", ["llama-chat", "vllm-chat"])
def test_structured_output_on_llama_server(stack: Stack, name: str) -> None:
    question = [{"role": "user", "content": "Is water wet? Answer in JSON."}]
    answer = ollama.Client(host=stack.flexi.url, timeout=120).chat(
        model=name, messages=question, format=SCHEMA, options={"num_predict": 24, "temperature": 0})
    assert isinstance(json.loads(answer.message.content)["ok"], bool)
    done = openai.OpenAI(base_url=stack.flexi.url + "/v1", api_key="unused", timeout=120).chat.completions.create(
        model=name, messages=question, max_tokens=24, temperature=0,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}})
    assert isinstance(json.loads(done.choices[0].message.content or "")["ok"], bool)


def test_undeclared_capabilities_are_refused_clearly(stack: Stack) -> None:
    """What a backend does not declare (thinking is not in the default capabilities) is a clear 400, never an
    answer that ignored the request's thinking switch (tools: tests/service/test_remote_tools_e2e.py)."""
    r = httpx.post(stack.flexi.url + "/api/chat", json={"model": "llama-chat", "messages": MESSAGES, "think": True,
                                                        "stream": False, "options": FEW}, timeout=60)
    assert r.status_code == 400 and r.json()["error"] == '"llama-chat:latest" does not support thinking'


def _wait_for_probe_verdict(stack: Stack, backend: str, up: bool = False, timeout: float = 30) -> None:
    """The health probe runs at start and every second here: wait until it has marked `backend` down
    (circuit open) or up (circuit closed)."""
    deadline = time.monotonic() + timeout
    want = (1, 0) if up else (0, 2)
    while (total(_flexi_metrics(stack), "flexi_backend_up", backend=backend),
           total(_flexi_metrics(stack), "flexi_backend_circuit_state", backend=backend)) != want:
        assert time.monotonic() < deadline, f"the probe never marked {backend} {'up' if up else 'down'}"
        time.sleep(0.2)


def test_dns_failure_fails_that_request_only(stack: Stack) -> None:
    """A host name that does not resolve: the health probe opens its circuit, so requests get 503 with
    Retry-After at once (before the probe or with probes off they get 502 "unreachable", tested with the
    fake engines); either way only that model's requests fail, each with a usage record."""
    home, model = stack.flexi.home, "remote-dns:latest"
    _wait_for_probe_verdict(stack, "nowhere")
    before, metrics = len(_records(home, model, 0)), _flexi_metrics(stack)
    r = httpx.post(stack.flexi.url + "/api/chat", json={"model": "remote-dns", "messages": MESSAGES, "stream": False,
                                                        "options": FEW}, timeout=60)
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"].startswith("every backend serving remote-dns:latest is unavailable at the moment")
    with pytest.raises(openai.APIStatusError) as exc:
        openai.OpenAI(base_url=stack.flexi.url + "/v1", api_key="unused", max_retries=0).chat.completions.create(
            model="remote-dns", messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
    assert exc.value.status_code == 503 and "is unavailable at the moment" in str(exc.value)
    records = _records(home, model, before + 2)[before:]
    assert [(x.status, x.prompt_tokens, x.completion_tokens) for x in records] == [("rejected", 0, 0)] * 2
    now = _flexi_metrics(stack)
    errors = "flexi_request_errors_total"
    assert total(now, errors, model=model, type="backend_unavailable") - \
        total(metrics, errors, model=model, type="backend_unavailable") == 2
    assert ollama.Client(host=stack.flexi.url, timeout=120).chat(model="llama-chat", messages=MESSAGES,
                                                                 options=FEW).message.content


@dataclass
class Outcome:
    chunks: list[dict[str, Any]]
    first_token: float | None = None  # monotonic time the client saw its first token
    failure: str | None = None  # what broke the client's read of Flexi's answer (a cut connection, say)

    @property
    def text(self) -> str:
        return "".join(c.get("message", {}).get("content") or "" for c in self.chunks)

    @property
    def tokens(self) -> int:
        return sum(1 for c in self.chunks if c.get("message", {}).get("content"))


def _stream(url: str, outcome: Outcome, started: threading.Semaphore) -> None:
    body = {"model": "kill-pair", "messages": COUNT, "options": {"num_predict": 40, "temperature": 0}}
    try:
        with httpx.stream("POST", url + "/api/chat", json=body, timeout=120) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if chunk.get("message", {}).get("content") and outcome.first_token is None:
                    outcome.first_token = time.monotonic()
                    started.release()
                outcome.chunks.append(chunk)
    except Exception as exc:  # reported by the test with Flexi's log, not lost in a thread
        outcome.failure = repr(exc)


def _log_tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:]


def test_killing_a_backend_mid_load(stack: Stack, tmp_path: Path) -> None:
    """8 streams on a model served by two llama-servers, one request at a time each: two stream, six wait
    in Flexi's queues. SIGKILL one engine: its running stream ends with a clear error (not a hang, not a
    second answer), every request that had not started finishes on the other engine, each leaves a usage
    record, and Flexi serves on."""
    victim = start_llama_server(tmp_path / "victim.log", stack.victim_port, slots=1, context=1024)
    _wait_for_probe_verdict(stack, "victim", up=True)  # probed down before it started: routing skips it until then
    model = "kill-pair:latest"
    before, metrics = len(_records(stack.flexi.home, model, 0)), _flexi_metrics(stack)
    outcomes = [Outcome([]) for _ in range(8)]
    started = threading.Semaphore(0)
    threads = [threading.Thread(target=_stream, args=(stack.flexi.url, o, started), daemon=True) for o in outcomes]
    try:
        for t in threads:
            t.start()
        for _ in range(2):  # one stream on each engine
            assert started.acquire(timeout=90), "no stream started"
        unstarted = [o for o in outcomes if o.first_token is None]
        victim.kill()
        for t in threads:
            t.join(120)
            assert not t.is_alive(), "a request hung after its backend was killed"
    finally:
        victim.stop()
    broken = [o.failure for o in outcomes if o.failure]
    assert not broken, f"{broken}\nFlexi's log:\n{_log_tail(stack.flexi.log_path)}"
    cut = [o for o in outcomes if o.chunks and "error" in o.chunks[-1]]
    finished = [o for o in outcomes if o not in cut]
    assert len(cut) == 1, f"{[o.chunks[-1] for o in outcomes]}\nFlexi's log:\n{_log_tail(stack.flexi.log_path)}"  # the victim's one stream
    assert cut[0].chunks[-1]["error"] == 'backend "victim" closed the stream before the answer was complete'
    assert cut[0] not in unstarted and cut[0].tokens >= 1
    assert not any(c.get("done") for c in cut[0].chunks) and sum("error" in c for c in cut[0].chunks) == 1
    assert len(unstarted) >= 5
    for o in finished:  # the others, queued on the victim included, answered once on the survivor
        assert o.chunks[-1]["done"] and o.text and not any("error" in c for c in o.chunks), \
            f"{o.chunks}\nFlexi's log:\n{_log_tail(stack.flexi.log_path)}"
        assert sum(bool(c.get("done")) for c in o.chunks) == 1 and o.tokens == o.chunks[-1]["eval_count"]
    assert len({o.text for o in finished}) == 1  # temperature 0, one engine at a time: the same answer...
    assert finished[0].text.startswith(cut[0].text)  # ...of which the cut stream got a part, and nothing glued on
    prompt_tokens, _ = _direct_usage(stack.llama, COUNT, 1)
    records = _records(stack.flexi.home, model, before + 8)[before:]
    assert sorted(r.status for r in records) == ["error"] + ["ok"] * 7
    for record in records:
        if record.status == "ok":
            assert record.prompt_tokens == prompt_tokens and 1 <= record.completion_tokens <= 40
        else:  # billed for what it delivered and an estimate of its prompt
            assert record.completion_tokens == cut[0].tokens and record.prompt_tokens > 0
    now = _flexi_metrics(stack)
    for name, labels, count in (("flexi_requests_total", {"status": "ok"}, 7),
                                ("flexi_requests_total", {"status": "error"}, 1),
                                ("flexi_request_errors_total", {"type": "backend_error"}, 1)):
        assert total(now, name, model=model, **labels) - total(metrics, name, model=model, **labels) == count
    assert "backend victim failed before the first token" in stack.flexi.log()
    after = ollama.Client(host=stack.flexi.url, timeout=120).chat(model="kill-pair", messages=MESSAGES, options=FEW)
    assert after.message.content and after.prompt_eval_count == _direct_usage(stack.llama, MESSAGES, 3)[0]
    assert httpx.get(stack.flexi.url + "/api/version", timeout=10).status_code == 200
