"""Replays of every Moodle AI connector against the real running Flexi (shared `server`, default model).

Each test sends the exact request the PHP code sends (URL shape, headers, body; values a site would
configure filled in) and reads the answer the way that PHP code does (the fields it reads, with the same
fallbacks). The PHP file and the commit replayed are named in each test.

Plugins with fixed model lists (gpt-4o, gpt-3.5-turbo, llama3, …) reach the default model through model
aliases, set up here through `/admin/aliases` like an admin would. Most connectors send no token limit,
so the aliases point at `moodle-replay`, a model created from the default one with `num_predict` fixed (an
admin's Modelfile does the same): the PHP requests stay unchanged and the answers stay short.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, RunningServer

pytestmark = pytest.mark.e2e

REPLAY = "moodle-replay"
#: the names the connectors' fixed lists offer (and Moodle's defaults), as an admin would map them
ALIASES = ("gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "llama3", "llama3.3")
KEY = "flexi-moodle-site-key"  # auth is off on the shared server: any key passes, as a real one would
SITE_USER = hashlib.sha256(b"siteidentifier" + b"42").hexdigest()  # Moodle's generate_userid(): sha256(site id . user id)
PROMPT = "Say hello to the class."


@pytest.fixture(scope="module")
def moodle(server: RunningServer) -> Iterator[httpx.Client]:
    """The shared server with the replay model and the aliases (removed again afterwards, so tests that
    count models see the server as before)."""
    with httpx.Client(base_url=server.url, timeout=300) as http:
        made = http.post("/api/create", json={"model": REPLAY, "from": MODEL, "stream": False,
                                              "parameters": {"num_predict": 12, "temperature": 0}})
        assert made.status_code == 200, made.text
        for alias in ALIASES:
            r = http.post("/admin/aliases", json={"name": alias, "target": REPLAY})
            assert r.status_code == 201, r.text
        try:
            yield http
        finally:
            for alias in ALIASES:
                http.delete(f"/admin/aliases/{alias}")
            http.request("DELETE", "/api/delete", json={"model": REPLAY})


def _json_body(body: dict[str, Any]) -> bytes:
    """PHP's json_encode: compact, '/' escaped, non-ASCII as \\u escapes."""
    return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode()


# --- core aiprovider_openai (Moodle 4.5) ------------------------------------------------------------
def test_core_openai_generate_text(moodle: httpx.Client) -> None:
    """ai/provider/openai/classes/process_generate_text.php @ 9762977c028cbd1884ed311a94c49efbae87591b
    (endpoint and model from the action settings; provider.php adds `Authorization: Bearer`)."""
    body = {"model": "gpt-4o", "user": SITE_USER,
            "messages": [{"role": "system", "content": "You will receive a text input from the user. Answer briefly."},
                         {"role": "user", "content": PROMPT}]}
    r = moodle.post("/v1/chat/completions", content=_json_body(body),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    obj = r.json()  # handle_api_success()
    result = {"id": obj["id"], "fingerprint": obj["system_fingerprint"],
              "generatedcontent": obj["choices"][0]["message"]["content"],
              "finishreason": obj["choices"][0]["finish_reason"],
              "prompttokens": obj["usage"]["prompt_tokens"], "completiontokens": obj["usage"]["completion_tokens"]}
    assert result["generatedcontent"] and result["finishreason"] in ("stop", "length")
    assert result["prompttokens"] > 0 and 0 < result["completiontokens"] <= 12
    assert result["id"].startswith("chatcmpl-") and result["fingerprint"]


def test_core_openai_generate_image_fails_clearly(moodle: httpx.Client) -> None:
    """ai/provider/openai/classes/process_generate_image.php @ 253253eede136b0088775256b1b2b77e5d1c4584:
    Flexi makes no images; handle_api_error() reads `error.message` of a 4xx and shows it."""
    body = {"prompt": "A cat", "model": "dall-e-3", "n": 1, "quality": "standard", "response_format": "url",
            "size": "1024x1024", "style": "vivid", "user": SITE_USER}
    r = moodle.post("/v1/images/generations", content=_json_body(body),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert 400 <= r.status_code < 500
    message = r.json()["error"]["message"]
    assert "images" in message and "AI providers" in message
    german = moodle.post("/v1/images/generations", content=_json_body(body),
                         headers={"Authorization": f"Bearer {KEY}", "Accept-Language": "de"})
    assert "Bilder" in german.json()["error"]["message"]


# --- core aiprovider_azureai (Moodle 4.5) -----------------------------------------------------------
def _azure(moodle: httpx.Client, deployment: str, operation: str, body: dict[str, Any],
           version: str | None = "2024-06-01", key: str | None = KEY) -> httpx.Response:
    url = f"/openai/deployments/{deployment}/{operation}" + (f"?api-version={version}" if version else "")
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["api-key"] = key
    return moodle.post(url, content=_json_body(body), headers=headers)


def test_core_azureai_generate_text(moodle: httpx.Client) -> None:
    """ai/provider/azureai/classes/process_generate_text.php @ 9762977c028cbd1884ed311a94c49efbae87591b:
    `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={apiversion}` (default
    2024-06-01), `api-key` header (provider.php), no model in the body."""
    body = {"user": SITE_USER, "messages": [{"role": "system", "content": "Answer briefly."},
                                            {"role": "user", "content": PROMPT}]}
    r = _azure(moodle, "gpt-4o", "chat/completions", body)
    assert r.status_code == 200, r.text
    obj = r.json()  # handle_api_success(): the same fields as the OpenAI provider
    assert obj["id"] and obj["system_fingerprint"] and obj["choices"][0]["message"]["content"]
    assert obj["choices"][0]["finish_reason"] in ("stop", "length")
    assert obj["usage"]["prompt_tokens"] > 0 and obj["usage"]["completion_tokens"] > 0
    assert obj["model"] == "gpt-4o"


def test_core_azureai_summarise_and_real_model_deployment(moodle: httpx.Client) -> None:
    """ai/provider/azureai/classes/process_summarise_text.php @ 40fd9b8d227dbbeb375fc200a8d24caff31db874
    sends the generate_text request with its own deployment: here the replay model's own name."""
    body = {"user": SITE_USER, "messages": [{"role": "system", "content": "Summarise the text."},
                                            {"role": "user", "content": "Flexi serves language models on campus."}]}
    r = _azure(moodle, REPLAY, "chat/completions", body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


def test_core_azureai_streaming_like_azure(moodle: httpx.Client) -> None:
    """Azure streams chat completions as SSE chunks ending in `data: [DONE]` (the same wire as OpenAI)."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "stream": True}
    with moodle.stream("POST", "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
                       content=_json_body(body), headers={"api-key": KEY, "Content-Type": "application/json"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_core_azureai_generate_image_fails_clearly(moodle: httpx.Client) -> None:
    """ai/provider/azureai/classes/process_generate_image.php @ 471cd4775467e6b41279e729c1531980d2e6361a:
    `…/openai/deployments/{deployment}/images/generations?api-version=…`; a 4xx's `error.message` is shown."""
    body = {"prompt": "A cat", "n": 1, "quality": "standard", "size": "1024x1024", "style": "vivid", "user": SITE_USER}
    r = _azure(moodle, "dall-e-3", "images/generations", body)
    assert r.status_code == 400 and "images" in r.json()["error"]["message"]


def test_azure_embeddings_and_completions(moodle: httpx.Client) -> None:
    """The other deployment operations Azure clients use: embeddings (any model embeds) and completions."""
    r = _azure(moodle, "gpt-4o", "embeddings", {"input": ["Kurs", "course"]})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2 and r.json()["data"][0]["embedding"]
    r = _azure(moodle, "gpt-4o", "completions", {"prompt": "Once upon a time", "max_tokens": 3})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] is not None


def test_azure_deployment_wins_over_body_model(moodle: httpx.Client) -> None:
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": PROMPT}]}
    r = _azure(moodle, "gpt-4o", "chat/completions", body)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gpt-4o"


# --- core aiprovider_ollama (Moodle 5.0+) -----------------------------------------------------------
def test_core_ollama_generate_text(moodle: httpx.Client) -> None:
    """ai/provider/ollama/classes/process_generate_text.php @ 0fe8287c33574f35727901fa271719a1042ad85d with
    abstract_processor.php @ 06cd71edd047c26ce36fb42d25fa0bd1b467958d: `{endpoint}/api/generate`; options are
    the action's model settings plus `modelextraparams`; provider.php adds Basic auth when enabled (the
    password field carries the Flexi key)."""
    body = {"model": "llama3.3", "stream": False, "prompt": PROMPT, "user": SITE_USER,
            "options": {"temperature": 0.5, "num_predict": 8}, "system": "Answer briefly."}
    basic = base64.b64encode(f"moodle:{KEY}".encode()).decode()
    r = moodle.post("/api/generate", content=_json_body(body),
                    headers={"Content-Type": "application/json", "Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text
    obj = r.json()  # handle_api_success()
    result = {"generatedcontent": obj["response"], "finishreason": obj["done_reason"],
              "prompttokens": obj["prompt_eval_count"], "completiontokens": obj["eval_count"],
              "model": obj.get("model", "llama3.3")}
    assert result["generatedcontent"] and result["finishreason"] in ("stop", "length")
    assert result["prompttokens"] > 0 and 0 < result["completiontokens"] <= 8 and result["model"]


# --- local_ai_manager (mebis-lp) -----------------------------------------------------------------------
def _ai_manager_reads(obj: dict[str, Any]) -> tuple[str, float, float, float, str]:
    """aitool_chatgpt connector::execute_prompt_completion(): model, usage (total, prompt, completion), content."""
    return (obj["model"], float(obj["usage"]["total_tokens"]), float(obj["usage"]["prompt_tokens"]),
            float(obj["usage"]["completion_tokens"]), obj["choices"][0]["message"]["content"])


def test_local_ai_manager_chatgpt(moodle: httpx.Client) -> None:
    """tools/chatgpt/classes/connector.php @ 10599207419d5deaaf64b4b44dc47561cde0fc8d (get_prompt_data with
    a conversation context) and classes/base_connector.php @ d14791360e8a8d4765445626df77756ef293c1c0
    (make_request: Bearer key, `application/json;charset=utf-8`)."""
    body = {"temperature": 0.5, "messages": [{"role": "system", "content": "You are a tutor."},
                                             {"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello!"},
                                             {"role": "user", "content": PROMPT}], "model": "gpt-4o-mini"}
    r = moodle.post("/v1/chat/completions", content=_json_body(body),
                    headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json;charset=utf-8"})
    assert r.status_code == 200, r.text
    model, total, prompt, completion, content = _ai_manager_reads(r.json())
    assert model == "gpt-4o-mini" and content and total == prompt + completion and completion > 0


def test_local_ai_manager_chatgpt_azure_mode(moodle: httpx.Client) -> None:
    """The same connector with Azure enabled: tools/chatgpt/classes/instance.php @
    062dbe03e6589440297cc4b3146be442e78f854c builds `…/openai/deployments/{deploymentid}/chat/completions
    ?api-version={apiversion}`, get_prompt_data() leaves out `model`, get_headers() swaps Authorization
    for `api-key`."""
    body = {"temperature": 0.5, "messages": [{"role": "user", "content": PROMPT}]}
    r = moodle.post("/openai/deployments/gpt-4o/chat/completions?api-version=2024-02-15-preview",
                    content=_json_body(body), headers={"api-key": KEY, "Content-Type": "application/json;charset=utf-8"})
    assert r.status_code == 200, r.text
    model, total, prompt, completion, content = _ai_manager_reads(r.json())
    assert model == "gpt-4o" and content and total == prompt + completion


def test_local_ai_manager_ollama(moodle: httpx.Client) -> None:
    """tools/ollama/classes/connector.php @ ad8ff8eec219d00e5833582541ecc4d6f2bee56c: /api/chat with
    keep_alive 60m and the model from its fixed list (`llama3`), read by execute_prompt_completion()."""
    body = {"model": "llama3", "messages": [{"role": "user", "content": PROMPT}], "stream": False,
            "keep_alive": "60m", "options": {"temperature": 0.5}}
    r = moodle.post("/api/chat", content=_json_body(body),
                    headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json;charset=utf-8"})
    assert r.status_code == 200, r.text
    obj = r.json()
    prompt_tokens = obj.get("prompt_eval_count", 0.0)  # isset(...) ? ... : 0.0
    response_tokens = obj.get("eval_count", 0.0)
    assert obj["model"] and obj["message"]["content"] and prompt_tokens > 0 and response_tokens > 0


# --- tool_aiconnect (marcusgreen) -------------------------------------------------------------------
def test_tool_aiconnect_prompt_completion(moodle: httpx.Client) -> None:
    """classes/ai/ai.php @ 0262a871c02ede4d6e17c38556d464c507e3faa3: make_request() posts JSON mode with one
    system message `You: …` and no token limit, throws on `error`, reads choices[0].message."""
    body = {"response_format": {"type": "json_object"}, "model": "gpt-4o", "temperature": 0.5,
            "messages": [{"role": "system", "content": "You: " + PROMPT}]}
    r = moodle.post("/v1/chat/completions", content=_json_body(body),
                    headers={"Content-Type": "application/json;charset=utf-8", "Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    response = r.json()
    assert "error" not in response
    message = response["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"].lstrip().startswith("{")


def test_tool_aiconnect_get_models(moodle: httpx.Client) -> None:
    """The same file's get_models(): an endpoint not on api.openai.com is asked `/api/tags` (Ollama's list),
    with `Authorization: Bearer ` and an empty key (it reads an undefined property); reads models[].name."""
    # "Bearer " with its trailing space: HTTP strips trailing whitespace of a field value (RFC 9110 5.5)
    r = moodle.get("/api/tags", headers={"Authorization": "Bearer"})
    assert r.status_code == 200, r.text  # auth off (a key-less site); with auth on this list needs a key
    names = [m["name"] for m in r.json()["models"]]
    assert "gpt-4o" in names and any(n.startswith(REPLAY) for n in names)


# --- local_aiquestions (yedidiaklein) ---------------------------------------------------------------
def test_local_aiquestions(moodle: httpx.Client) -> None:
    """locallib.php @ 0d53f5e8c6f9993873fe04461b12e7609108ab9e, local_aiquestions_get_questions(): a body
    written by hand (three system messages, two with `name`), model gpt-3.5-turbo, Bearer key; reads
    choices[0].message.content (else it keeps the whole object)."""
    raw = ('{\n        "model": "gpt-3.5-turbo",\n        "messages": [\n'
           '            {"role": "system", "content": "Write questions in GIFT format. Write 1 questions."},\n'
           '            {"role": "system", "name":"example_user", "content": "Create a question about cats"},\n'
           '            {"role": "system", "name": "example_assistant", "content": "::Cats::Cats are? {=animals ~plants ~stones ~cars}"},\n'
           '            {"role": "user", "content": "Now, create 1 questions for me based on this topic: Moodle courses"}\n'
           '            ]}')
    r = moodle.post("/v1/chat/completions", content=raw.encode(),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["choices"][0]["message"]["content"], str) and r.json()["choices"][0]["message"]["content"]


# --- mod_longpage (CATALPAresearch) --------------------------------------------------------------------
def test_mod_longpage_check_models(moodle: httpx.Client) -> None:
    """check_models.php @ 278c36173e98f0e4cfa2bd2d3523e04cd5fbe526 (CATALPAresearch/moodle_mod_longpage): the
    settings' model check asks `{scheme}://{host}[:port]/api/tags` of the configured `aiurl` with the `aitoken`
    as Bearer and shows name, size (display_size) and modified_at (strtotime) of each model."""
    r = moodle.get("/api/tags", headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    models = r.json()["models"]
    assert isinstance(models, list) and len(models) > 0
    for model in models:
        assert model["name"] and isinstance(model["size"], int) and model["modified_at"]
    assert "gpt-4o" in [m["name"] for m in models]


# --- aliases in the lists the connectors read ----------------------------------------------------------
def test_aliases_listed_and_shown(moodle: httpx.Client) -> None:
    tags = [m["name"] for m in moodle.get("/api/tags").json()["models"]]
    ids = [m["id"] for m in moodle.get("/v1/models").json()["data"]]
    for alias in ALIASES:
        assert alias in tags and alias in ids
    assert moodle.get("/v1/models/gpt-4o").json()["id"] == "gpt-4o"
    show = moodle.post("/api/show", json={"model": "gpt-4o"})
    assert show.status_code == 200 and "parameters" in show.json()
