"""Exact Ollama wire format and bad input, over raw HTTP against the real server."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

CREATED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")
FINAL_FIELDS = ("done_reason", "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration")


def test_root_and_version(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.head("/").status_code == 200
    assert re.match(r"^\d+\.\d+\.\d+$", http.get("/api/version").json()["version"])


def test_generate_stream_wire_format(http: httpx.Client) -> None:
    with http.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Was bedeutet die Abkürzung FLEXI?",
                                                     "options": {"num_predict": 6, "temperature": 0}}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    statuses = [line for line in lines if "status" in line]  # the first request may see the model loading
    assert all(s["status"] in ("loading", "queued") and s["response"] == "" and s["done"] is False for s in statuses)
    *parts, final = [line for line in lines if "status" not in line]
    assert parts, "expected streamed tokens before the final line"
    for p in parts:
        assert list(p) == ["model", "created_at", "response", "done"]
        assert p["model"] == MODEL and p["done"] is False and CREATED_AT.match(p["created_at"])
    assert final["done"] is True and final["response"] == ""
    for field in FINAL_FIELDS:
        assert field in final
    for field in FINAL_FIELDS[1:]:
        assert isinstance(final[field], int) and final[field] >= 0
    assert final["eval_count"] == 6 and final["done_reason"] == "length"
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]


def test_empty_prompt_loads_and_keep_alive_zero_unloads(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL})
    assert r.json()["done_reason"] == "load"
    assert any(m["name"] == MODEL for m in http.get("/api/ps").json()["models"])
    r = http.post("/api/generate", json={"model": MODEL, "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"
    deadline = time.monotonic() + 60
    while any(m["name"] == MODEL for m in http.get("/api/ps").json()["models"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(m["name"] == MODEL for m in http.get("/api/ps").json()["models"])
    # and the next request loads it again
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["load_duration"] > 0


def test_keep_alive_forever_in_ps(http: httpx.Client) -> None:
    http.post("/api/generate", json={"model": MODEL, "keep_alive": -1})
    entry = next(m for m in http.get("/api/ps").json()["models"] if m["name"] == MODEL)
    assert entry["expires_at"].startswith("23")  # centuries ahead, like Ollama's "Forever"
    http.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
    entry = next(m for m in http.get("/api/ps").json()["models"] if m["name"] == MODEL)
    assert entry["expires_at"].startswith("20")


# --- bad input -------------------------------------------------------------------------------
def test_malformed_json_400(http: httpx.Client) -> None:
    r = http.post("/api/generate", content=b'{"model": "smollm2:135m", "prompt": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "invalid JSON" in r.json()["error"]


@pytest.mark.parametrize("body,field", [
    ({"model": MODEL, "prompt": "hi", "options": {"temperature": "hot"}}, "options.temperature"),
    ({"model": MODEL, "prompt": 42}, "prompt"),
    ({"model": MODEL, "prompt": "hi", "stream": "maybe"}, "stream"),
    ({"model": MODEL, "messages": "hello"}, "messages"),
])
def test_wrong_types_name_the_field(http: httpx.Client, body: dict, field: str) -> None:
    path = "/api/chat" if "messages" in body else "/api/generate"
    r = http.post(path, json=body)
    assert r.status_code == 400
    assert f'"{field}"' in r.json()["error"]
    assert "Traceback" not in r.text


def test_bad_keep_alive_400(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "keep_alive": "soon"})
    assert r.status_code == 400 and "duration" in r.json()["error"]


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a\\b", "a\x00b", "%2e%2e/x", "..", "a/../../b"])
def test_hostile_model_names_rejected(http: httpx.Client, server: RunningServer, name: str) -> None:
    before = {p for p in server.home.parent.rglob("*")}
    for method, path, body in [
        ("POST", "/api/copy", {"source": MODEL, "destination": name}),
        ("POST", "/api/create", {"model": name, "from": MODEL}),
        ("POST", "/api/pull", {"model": name, "stream": False}),
        ("POST", "/api/generate", {"model": name, "prompt": "hi"}),
    ]:
        r = http.request(method, path, json=body)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["error"]
    after = {p for p in server.home.parent.rglob("*")}
    assert not {p for p in after - before if "evil" in str(p) or "passwd" in str(p)}
    assert not (server.home.parent / "evil").exists()


@pytest.mark.parametrize("digest", ["md5:abc", "sha256:xyz", "sha256:" + "a" * 63, "sha256:" + "A" * 64 + "0", "../../etc"])
def test_bad_digest_400(http: httpx.Client, digest: str) -> None:
    assert http.head(f"/api/blobs/{digest}").status_code in (400, 404)
    r = http.post(f"/api/blobs/{digest}", content=b"data")
    assert r.status_code in (400, 404)


def test_blob_digest_mismatch_400(http: httpx.Client) -> None:
    wrong = "sha256:" + "0" * 64
    r = http.post(f"/api/blobs/{wrong}", content=b"hello")
    assert r.status_code == 400 and "mismatch" in r.json()["error"]
    assert http.head(f"/api/blobs/{wrong}").status_code == 404


@pytest.mark.parametrize("payload", [
    b"GGUF",  # 4 bytes
    b"NOPE" + b"\x00" * 100,  # bad magic
    b"GGUF" + (3).to_bytes(4, "little") + (2**62).to_bytes(8, "little") + (1).to_bytes(8, "little") + b"\x00" * 64,  # huge tensor count
])
def test_garbage_gguf_rejected_and_server_keeps_serving(http: httpx.Client, payload: bytes) -> None:
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    assert http.post(f"/api/blobs/{digest}", content=payload).status_code in (200, 201)
    r = http.post("/api/create", json={"model": "garbage", "files": {"x.gguf": digest}, "stream": False})
    assert r.status_code == 400
    assert "GGUF" in r.json()["error"]
    assert "garbage:latest" not in [m["name"] for m in http.get("/api/tags").json()["models"]]
    ok = http.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert ok.status_code == 200


def test_truncated_real_gguf_rejected(http: httpx.Client) -> None:
    from flexi.store.store import default_model_file

    path = default_model_file()
    assert path is not None
    data = Path(path).read_bytes()[: 3 * 1024 * 1024]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    http.post(f"/api/blobs/{digest}", content=data)
    r = http.post("/api/create", json={"model": "truncated", "files": {"m.gguf": digest}, "stream": False})
    assert r.status_code == 400 and "GGUF" in r.json()["error"]


@pytest.mark.parametrize("fmt", [{"type": "nonsense"}, {"type": "object", "properties": [1]}, 42, "yaml"])
def test_invalid_format_400_and_runner_alive(http: httpx.Client, fmt: object) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "format": fmt, "stream": False})
    assert r.status_code == 400, r.text
    assert "format" in r.json()["error"].lower() or "schema" in r.json()["error"].lower()
    ok = http.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert ok.status_code == 200


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose per-request token limit is small enough to be reached in a test."""
    srv = start_server(tmp_path_factory.mktemp("capped") / "home", {"FLEXI_MAX_PREDICT": str(CAP)})
    yield srv
    stop_server(srv)


CAP = 7


@pytest.mark.parametrize("num_predict", [10**9, -1, CAP + 1])
def test_huge_num_predict_is_clamped(capped: RunningServer, num_predict: int) -> None:
    """A request for more tokens than FLEXI_MAX_PREDICT (or for "until the context is full", -1)
    stops at the limit: exactly CAP tokens, reported as "length"; under the limit nothing changes."""
    body = {"model": MODEL, "prompt": "Tell a long story.", "stream": False,
            "options": {"num_predict": num_predict, "ignore_eos": True, "temperature": 0}}
    r = httpx.post(capped.url + "/api/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["eval_count"] == CAP and r.json()["done_reason"] == "length"
    under = httpx.post(capped.url + "/api/generate", json={**body, "options": {**body["options"], "num_predict": 3}},
                       timeout=120).json()
    assert under["eval_count"] == 3


def test_huge_max_tokens_is_clamped_openai(capped: RunningServer) -> None:
    r = httpx.post(capped.url + "/v1/completions", timeout=120,
                   json={"model": MODEL, "prompt": "Tell a long story.", "max_tokens": 10**9, "ignore_eos": True})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == CAP and r.json()["choices"][0]["finish_reason"] == "length"


def test_prompt_longer_than_context_is_400(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "word " * 6000, "stream": False,
                                         "options": {"num_ctx": 1024, "num_predict": 1}})
    assert r.status_code == 400 and "too long" in r.json()["error"]


def test_tools_on_model_without_tool_template_400(http: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
    r = http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "weather?"}], "tools": tools})
    assert r.status_code == 400 and "does not support tools" in r.json()["error"]


def test_think_and_images_unsupported_400(http: httpx.Client) -> None:
    r = http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "think": True})
    assert r.status_code == 400 and "thinking" in r.json()["error"]
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "what is this?", "images": ["aGVsbG8="]})
    assert r.status_code == 400 and "images" in r.json()["error"]


def test_unknown_fields_ignored(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False, "frobnicate": True,
                                         "options": {"num_predict": 1, "mirostat_eta": 0.1}})
    assert r.status_code == 200


def test_client_disconnect_stops_generation(http: httpx.Client, server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        with c.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Tell a very long story.",
                                                      "options": {"num_predict": 5000, "ignore_eos": True}}) as r:
            seen = 0
            for line in r.iter_lines():
                if line:
                    seen += 1
                if seen >= 5:
                    break
    deadline = time.monotonic() + 60
    pattern = re.compile(r"runner stopped it after (\d+) generated tokens")
    while time.monotonic() < deadline and not pattern.search(server.log()):
        time.sleep(0.1)
    m = pattern.search(server.log())
    assert m, "the runner was not told to stop"
    assert int(m.group(1)) < 100  # stopped at once, not after num_predict=5000


def _fresh_prompt_tokens(text: str) -> int:
    """How many tokens the runner makes of `text` as a whole new prompt: llama.cpp's tokenizer on
    the model's own vocabulary (vocab-only load: no weights), special tokens parsed, BOS added."""
    import llama_cpp as ll

    from flexi.store.store import default_model_file

    path = default_model_file()
    assert path is not None
    ll.llama_backend_init()
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    assert model
    try:
        vocab = ll.llama_model_get_vocab(model)
        data = text.encode()
        buf = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(vocab, data, len(data), buf, len(buf), True, True)
        assert n > 0
        bos = ll.llama_vocab_bos(vocab)
        return n - 1 if n >= 2 and buf[0] == buf[1] == bos else n
    finally:
        ll.llama_model_free(model)


def test_raw_prompt_is_sent_verbatim(http: httpx.Client) -> None:
    """With raw, the runner gets exactly the caller's text (no template around it): its prompt has
    as many tokens as the text alone, while the same text without raw gets the chat template."""
    opts = {"temperature": 0, "num_predict": 2}
    chatml = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    for text in (chatml, "The capital of France is"):
        raw = http.post("/api/generate", json={"model": MODEL, "prompt": text, "raw": True, "stream": False,
                                               "options": opts}).json()
        assert raw["prompt_eval_count"] == _fresh_prompt_tokens(text), text
        assert "context" not in raw  # raw mode returns no context, like Ollama
    templated = http.post("/api/generate", json={"model": MODEL, "prompt": text, "stream": False,
                                                 "options": opts}).json()
    assert templated["prompt_eval_count"] > _fresh_prompt_tokens(text) + 4  # the check can tell the two apart


def test_go_template_field(http: httpx.Client) -> None:
    template = "<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "Capital of France?", "template": template,
                                         "system": "Answer with one word.", "stream": False,
                                         "options": {"temperature": 0, "num_predict": 8}})
    assert r.status_code == 200 and "Paris" in r.json()["response"]
    broken = http.post("/api/generate", json={"model": MODEL, "prompt": "x", "template": "{{ .Prompt ", "stream": False})
    assert broken.status_code == 400 and "template" in broken.json()["error"]


def test_system_changes_the_prompt(http: httpx.Client) -> None:
    base = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"temperature": 0, "num_predict": 1}}
    a = http.post("/api/generate", json=base).json()
    b = http.post("/api/generate", json={**base, "system": "You are a pirate. " * 20}).json()
    assert b["prompt_eval_count"] > a["prompt_eval_count"]


def test_context_continues_a_conversation(http: httpx.Client) -> None:
    first = http.post("/api/generate", json={"model": MODEL, "prompt": "My name is Ada.", "stream": False,
                                             "options": {"temperature": 0, "num_predict": 8}}).json()
    second = http.post("/api/generate", json={"model": MODEL, "prompt": "What is my name?", "context": first["context"],
                                              "stream": False, "options": {"temperature": 0, "num_predict": 8}}).json()
    assert second["prompt_eval_count"] > len(first["context"])
    assert second["context"][: len(first["context"])] == first["context"]


def test_invalid_context_token_400(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "context": [10**9], "stream": False})
    assert r.status_code == 400 and "token" in r.json()["error"]


def test_suffix_unsupported_400(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "def f(", "suffix": "return x"})
    assert r.status_code == 400 and "insert" in r.json()["error"]


def test_num_ctx_beyond_model_is_clamped(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                         "options": {"num_ctx": 10**9, "num_predict": 2}})
    assert r.status_code == 200
    entry = next(m for m in http.get("/api/ps").json()["models"] if m["name"] == MODEL)
    assert entry["context_length"] <= 8192  # SmolLM2's training context


def test_non_streamed_request_cancelled_when_client_leaves(server: RunningServer) -> None:
    before = len(re.findall(r"runner stopped it after", server.log()))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "Tell a very long story.", "stream": False,
                                                       "options": {"num_predict": 5000, "ignore_eos": True}}, timeout=1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(re.findall(r"runner stopped it after", server.log())) == before:
        time.sleep(0.1)
    counts = [int(n) for n in re.findall(r"runner stopped it after (\d+) generated tokens", server.log())]
    assert len(counts) > before, "the runner kept generating for a client that had left"
    assert counts[-1] < 1000


def test_num_predict_zero_generates_nothing(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "Hello", "stream": False, "options": {"num_predict": 0}})
    assert r.status_code == 200 and r.json()["response"] == "" and r.json()["eval_count"] == 0


def test_bad_model_parameters_rejected_at_create(http: httpx.Client) -> None:
    for params in ({"temperature": "hot"}, {"num_ctx": "big"}, {"top_k": -3}):
        r = http.post("/api/create", json={"model": "broken-params", "from": MODEL, "parameters": params, "stream": False})
        assert r.status_code == 400 and "parameter" in r.json()["error"], r.text
    assert "broken-params:latest" not in [m["name"] for m in http.get("/api/tags").json()["models"]]


def test_huge_keep_alive_does_not_break_ps(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "keep_alive": 1e12})
    assert r.status_code == 200
    ps = http.get("/api/ps")
    assert ps.status_code == 200 and ps.json()["models"]
    http.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})


def test_stop_list_is_bounded_and_repeat_last_n_minus_one_works(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "options": {"stop": ["x"] * 100}})
    assert r.status_code == 400 and "stop" in r.json()["error"]
    r = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False,
                                         "options": {"repeat_last_n": -1, "num_predict": 3}})
    assert r.status_code == 200 and r.json()["eval_count"] <= 3
