"""Remote backends end to end: server A serves server B's model through `[[backends]]`, in both dialects.

B is a plain Flexi with the default model; A knows it twice (kind `flexi` over B's Ollama API, kind
`openai` over B's /v1), plus a backend on a closed port and a model whose first backend is down."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import RunningServer, free_port, start_server, stop_server

MODEL = "smollm2:135m"
SECRET = "sk-remote-test-secret-4711"
MESSAGES = [{"role": "user", "content": "Say hi."}]
FEW = {"num_predict": 3, "temperature": 0}
#: These tests send the same faulty backends many requests and want each one's own error: no probes or
#: circuit breaker here (tests/service/test_backend_health_e2e.py covers those).
NO_BREAKER = {"FLEXI_BACKEND_HEALTH_INTERVAL": "0", "FLEXI_BACKEND_FAILURE_THRESHOLD": "0"}


@dataclass
class Pair:
    a: RunningServer
    b: RunningServer


class FaultyEngine(BaseHTTPRequestHandler):
    """An Ollama-dialect engine that misbehaves as its URL prefix says: /hang, /garbage, /500, /cut."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.path.split("/")[1]
        if fault == "hang":
            time.sleep(4)
            return
        if fault == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "CUDA error: out of memory"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        if fault == "garbage":
            self.wfile.write(b"<html>Bad Gateway</html>\n")
        else:  # cut: one token, then the connection is gone
            self.wfile.write(b'{"message": {"content": "Hel"}, "done": false}\n')
            self.wfile.flush()
        self.close_connection = True


def _config(b_url: str, closed: str, faulty: str) -> str:
    return f'''
[[backends]]
name = "b-ollama"
url = "{b_url}"
kind = "flexi"
models = {{ "remote-ollama" = "{MODEL}" }}
max_concurrency = 2

[[backends]]
name = "b-openai"
url = "{b_url}/v1"
kind = "openai"
models = {{ "remote-openai" = "{MODEL}" }}
api_key = "{SECRET}"

[[backends]]
name = "down"
url = "{closed}"
kind = "ollama"
models = ["remote-down"]

[[backends]]
name = "down-first"
url = "{closed}/v1"
kind = "vllm"
models = {{ "remote-retry" = "whatever" }}

[[backends]]
name = "eu-cloud"
url = "{b_url}/v1"
kind = "openai"
models = {{ "remote-cloud" = "{MODEL}" }}
external = true
enabled = true

[[backends]]
name = "hangs"
url = "{faulty}/hang"
kind = "ollama"
models = ["remote-hang"]
timeout = 1

[[backends]]
name = "garbage"
url = "{faulty}/garbage"
kind = "ollama"
models = ["remote-garbage"]

[[backends]]
name = "fails"
url = "{faulty}/500"
kind = "ollama"
models = ["remote-500"]

[[backends]]
name = "cuts"
url = "{faulty}/cut"
kind = "ollama"
models = ["remote-cut"]

[[backends]]
name = "cuts-spare"
url = "{b_url}"
kind = "flexi"
models = {{ "remote-cut" = "{MODEL}" }}

[[backends]]
name = "b-second"
url = "{b_url}"
kind = "flexi"
models = {{ "remote-retry" = "{MODEL}" }}
'''


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("remote")
    b = start_server(root / "b")
    faulty = ThreadingHTTPServer(("127.0.0.1", 0), FaultyEngine)
    faulty.daemon_threads = True
    threading.Thread(target=faulty.serve_forever, daemon=True).start()
    try:
        home = root / "a"
        home.mkdir()
        (home / "config.toml").write_text(_config(b.url, f"http://127.0.0.1:{free_port()}",
                                                  f"http://127.0.0.1:{faulty.server_address[1]}"))
        a = start_server(home, NO_BREAKER)  # each fault's own error, every time (the breaker: test_backend_health_e2e)
        try:
            yield Pair(a, b)
        finally:
            stop_server(a)
    finally:
        faulty.shutdown()
        stop_server(b)


def _b_prompt_tokens(b: RunningServer) -> int:
    """B's own count for the test conversation: what A must report as usage."""
    r = httpx.post(b.url + "/api/chat", json={"model": MODEL, "messages": MESSAGES, "stream": False,
                                              "options": FEW}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["prompt_eval_count"]


@pytest.mark.parametrize("name", ["remote-ollama", "remote-openai"])
def test_ollama_client_chat_on_remote_models(pair: Pair, name: str) -> None:
    client = ollama.Client(host=pair.a.url, timeout=120)
    answer = client.chat(model=name, messages=MESSAGES, options=FEW)
    assert answer.message.content
    assert answer.prompt_eval_count == _b_prompt_tokens(pair.b)
    assert 1 <= answer.eval_count <= 3
    parts = list(client.chat(model=name, messages=MESSAGES, options=FEW, stream=True))
    assert "".join(p.message.content for p in parts)
    assert parts[-1].done and parts[-1].prompt_eval_count == answer.prompt_eval_count
    assert 1 <= parts[-1].eval_count <= 3


@pytest.mark.parametrize("name", ["remote-ollama", "remote-openai"])
def test_openai_client_chat_on_remote_models(pair: Pair, name: str) -> None:
    client = openai.OpenAI(base_url=pair.a.url + "/v1", api_key="unused", timeout=120)
    done = client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=3, temperature=0)  # type: ignore[arg-type]
    assert done.choices[0].message.content
    assert done.usage is not None and done.usage.prompt_tokens == _b_prompt_tokens(pair.b)
    assert 1 <= done.usage.completion_tokens <= 3
    stream = client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=3, temperature=0, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == done.usage.prompt_tokens


def test_raw_completion_on_remote_model(pair: Pair) -> None:
    client = openai.OpenAI(base_url=pair.a.url + "/v1", api_key="unused", timeout=120)
    done = client.completions.create(model="remote-openai", prompt="The capital of France is", max_tokens=3,
                                     temperature=0)
    assert done.choices[0].text and done.usage is not None and done.usage.prompt_tokens > 0


def test_remote_models_are_listed(pair: Pair) -> None:
    names = {m.model for m in ollama.Client(host=pair.a.url).list().models}
    assert {"remote-ollama:latest", "remote-openai:latest", "remote-retry:latest", MODEL} <= names
    ids = {m.id for m in openai.OpenAI(base_url=pair.a.url + "/v1", api_key="unused").models.list()}
    assert {"remote-ollama:latest", "remote-openai:latest", MODEL} <= ids
    assert httpx.get(pair.a.url + "/v1/models/remote-openai").json()["id"] == "remote-openai:latest"
    cards = {m["name"]: m for m in httpx.get(pair.a.url + "/ui/models").json()["models"]}  # the web chat's list
    assert not cards["remote-ollama:latest"]["external"] and cards["remote-cloud:latest"]["external"]
    assert not cards[MODEL]["external"]


def test_backend_down_fails_that_request_only(pair: Pair) -> None:
    r = httpx.post(pair.a.url + "/api/chat", json={"model": "remote-down", "messages": MESSAGES, "options": FEW},
                   timeout=60)
    assert r.status_code == 502
    assert 'backend "down" is unreachable' in r.json()["error"]
    with pytest.raises(openai.APIStatusError) as exc:
        openai.OpenAI(base_url=pair.a.url + "/v1", api_key="unused", max_retries=0).chat.completions.create(
            model="remote-down", messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
    assert exc.value.status_code == 502
    local = ollama.Client(host=pair.a.url, timeout=120).chat(model=MODEL, messages=MESSAGES, options=FEW)
    assert local.message.content  # A's own runner still serves


def test_retry_on_the_next_backend_before_the_first_token(pair: Pair) -> None:
    answer = ollama.Client(host=pair.a.url, timeout=120).chat(model="remote-retry", messages=MESSAGES, options=FEW)
    assert answer.message.content and answer.prompt_eval_count == _b_prompt_tokens(pair.b)
    assert "backend down-first failed before the first token" in pair.a.log()


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_body_cannot_choose_the_backend_url(pair: Pair, path: str) -> None:
    """LiteLLM CVE-2024-6587: a URL in the body would reach B here, so success would mean it was used."""
    body = {"model": "remote-down", "messages": MESSAGES, "stream": False, "max_tokens": 3, "options": FEW,
            "api_base": pair.b.url + "/v1", "base_url": pair.b.url + "/v1", "url": pair.b.url,
            "api_key": "sk-other", "extra_body": {"api_base": pair.b.url}}
    r = httpx.post(pair.a.url + path, json=body, timeout=60)
    assert r.status_code == 502, r.text


def test_api_key_never_shown(pair: Pair) -> None:
    shown = httpx.post(pair.a.url + "/api/show", json={"model": "remote-openai"}, timeout=30)
    assert shown.status_code == 200 and SECRET not in shown.text
    assert SECRET not in httpx.get(pair.a.url + "/api/tags").text
    assert SECRET not in pair.a.log()


@pytest.mark.parametrize("name", ["remote-ollama", "remote-openai"])
def test_embeddings_on_remote_models(pair: Pair, name: str) -> None:
    direct = httpx.post(pair.b.url + "/api/embed", json={"model": MODEL, "input": ["hello", "world"]}, timeout=120)
    assert direct.status_code == 200, direct.text
    through = ollama.Client(host=pair.a.url, timeout=120).embed(model=name, input=["hello", "world"])
    assert len(through.embeddings) == 2
    assert through.embeddings[0] == pytest.approx(direct.json()["embeddings"][0], abs=1e-5)
    assert through.prompt_eval_count == direct.json()["prompt_eval_count"]
    vectors = openai.OpenAI(base_url=pair.a.url + "/v1", api_key="unused").embeddings.create(model=name, input="hello")
    assert vectors.data[0].embedding == pytest.approx(direct.json()["embeddings"][0], abs=1e-5)


def test_bad_backend_configuration_refuses_to_start(tmp_path: Path) -> None:
    home = tmp_path / "bad"
    home.mkdir()
    (home / "config.toml").write_text('[[backends]]\nname = "cloud"\nurl = "https://llm.example.eu/v1"\n'
                                      'kind = "openai"\nmodels = ["gpt-x"]\nexternal = true\n')
    with pytest.raises(RuntimeError, match="is external .prompts leave the campus.: it stays off until an administrator"):
        start_server(home)
    (home / "config.toml").write_text('[[backends]]\nname = "b"\nurl = "http://127.0.0.1:9"\nkind = "flexi"\n'
                                      'models = ["bad name!"]\n')
    with pytest.raises(RuntimeError, match="refusing to start: backend 'b': 'bad name!' is not a valid model name"):
        start_server(home)


@pytest.mark.parametrize("model, status, message", [
    ("remote-hang", 504, 'backend "hangs" did not answer in time'),
    ("remote-garbage", 502, 'backend "garbage" sent an answer Flexi cannot read'),
    ("remote-500", 502, 'backend "fails" failed (HTTP 500): CUDA error: out of memory'),
])
def test_a_misbehaving_backend_fails_that_request_clearly(pair: Pair, model: str, status: int, message: str) -> None:
    r = httpx.post(pair.a.url + "/api/chat", json={"model": model, "messages": MESSAGES, "stream": False,
                                                   "options": FEW}, timeout=60)
    assert (r.status_code, r.json()["error"]) == (status, message)
    assert ollama.Client(host=pair.a.url, timeout=120).chat(model="remote-ollama", messages=MESSAGES,
                                                            options=FEW).message.content


def test_a_stream_cut_after_its_first_token_is_not_repeated_elsewhere(pair: Pair) -> None:
    """remote-cut has a healthy second backend, but the first one already streamed "Hel": the client gets
    an error after it, not a second answer glued on."""
    with httpx.stream("POST", pair.a.url + "/api/chat", json={"model": "remote-cut", "messages": MESSAGES,
                                                              "options": FEW}, timeout=60) as r:
        chunks = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert chunks[0]["message"]["content"] == "Hel"
    assert chunks[-1]["error"] == 'backend "cuts" closed the stream before the answer was complete'
    assert not any(c.get("done") for c in chunks)


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@pytest.mark.parametrize("name", ["remote-ollama", "remote-openai"])
def test_structured_output_through_remote_models(pair: Pair, name: str) -> None:
    answer = ollama.Client(host=pair.a.url, timeout=120).chat(
        model=name, messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}], format=SCHEMA,
        options={"num_predict": 24, "temperature": 0})
    assert isinstance(json.loads(answer.message.content)["ok"], bool)
    done = openai.OpenAI(base_url=pair.a.url + "/v1", api_key="unused", timeout=120).chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}], max_tokens=24,  # type: ignore[arg-type]
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}})
    assert isinstance(json.loads(done.choices[0].message.content or "")["ok"], bool)
