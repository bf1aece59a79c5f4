"""The logprobs wire shapes of both dialects, from scripted engine events (no model): OpenAI's legacy
completions object (`tokens`, `token_logprobs`, `top_logprobs` with the chosen token, `text_offset`), its chat
`logprobs.content`, Ollama's `logprobs`; what reaches the engine; and the refusals."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from flexi.api.logprobs import LegacyLogprobs, align_prompt, content_entries, token_text
from flexi.engine.types import PromptLogprobs, TextChunk, TokenLogprob
from tests.api.test_openai import FakeManager, _stats, access, app, client, http, manager  # noqa: F401 (fixtures)
from tests.api.test_template_targets import http as template_http  # noqa: F401 (fixture)

E_ACUTE = "é".encode()  # two bytes: a token may carry only one of them


def _lp(token: int, piece: bytes, logprob: float | None, top: list[tuple[int, bytes, float]] | None = None) -> TokenLogprob:
    return TokenLogprob(token, piece, logprob, top or [])


PROMPT = [_lp(1, b"", None), _lp(2, b"Caf", -2.5, [(7, b"The", -1.0)]), _lp(3, E_ACUTE[:1], -0.5, [(3, E_ACUTE[:1], -0.5)])]
OUT = [_lp(4, E_ACUTE[1:], -0.1, [(4, E_ACUTE[1:], -0.1), (9, b"!", -3.0)]), _lp(5, b" au", -1.5, [(6, b"!", -0.7), (5, b" au", -1.5)])]


def test_token_text_marks_partial_characters_like_openai() -> None:
    assert token_text(b" Paris") == " Paris"
    assert token_text(E_ACUTE[:1]) == "bytes:\\xc3"


def test_text_offsets_count_characters_of_the_returned_text() -> None:
    builder = LegacyLogprobs()
    part = builder.part(PROMPT + OUT)
    text = "Café au"
    assert part["tokens"] == ["", "Caf", "bytes:\\xc3", "bytes:\\xa9", " au"]
    assert part["text_offset"] == [0, 0, 3, 3, 4]  # the two halves of é share its one character's offset
    assert text[4:].startswith(" au")
    assert part["token_logprobs"] == [None, -2.5, -0.5, -0.1, -1.5]
    assert part["top_logprobs"][0] is None
    assert part["top_logprobs"][1] == {"The": -1.0, "Caf": -2.5}  # the chosen token always in (N + 1 entries)
    assert part["top_logprobs"][4] == {"!": -0.7, " au": -1.5}


def test_prompt_offsets_align_sentencepiece_pieces_with_the_echoed_text() -> None:
    # SentencePiece: the first word's piece carries a space the prompt does not have
    assert align_prompt([b" Answer", b":", b" Paris"], "Answer: Paris") == ([0, 6, 7], [None, None, None])
    assert align_prompt([b"", b" Answer", b":", b" Paris"], "Answer: Paris")[0] == [0, 0, 6, 7]  # BOS takes no text
    assert align_prompt([b" Answer"], " Answer")[0] == [0]  # a prompt with its own leading space keeps it
    # a control token written in the prompt: its empty piece spans its literal text
    assert align_prompt([b"a", b"", b"e"], "a<|endoftext|>e") == ([0, 1, 14], [None, "<|endoftext|>", None])
    assert align_prompt([b"", b"<", b"b>"], "<b>")[0] == [0, 0, 1]  # BOS before a literal "<b>": no control token
    assert align_prompt([E_ACUTE[:1], E_ACUTE[1:], b"x"], "éx")[0] == [0, 0, 1]


def test_echoed_prompt_offsets_follow_its_text_and_the_output_continues_after_it() -> None:
    builder = LegacyLogprobs()
    prompt = [_lp(1, b"", None), _lp(2, b" Answer", -1.0), _lp(3, b":", -2.0), _lp(4, b"", -3.0), _lp(5, b" Paris", -0.5)]
    text = "Answer:</s> Paris"
    part = builder.part(prompt, text)
    offsets = part["text_offset"]
    assert offsets == [0, 0, 6, 7, 11]
    assert part["tokens"][3] == "</s>" and text[offsets[3]:offsets[4]] == "</s>"
    out = builder.part([_lp(6, b" is", -0.2)])
    assert out["text_offset"] == [len(text)]


def test_content_entries_are_openai_chat_and_ollama_shaped() -> None:
    [first, _] = content_entries(OUT)
    assert first == {"token": "bytes:\\xa9", "logprob": -0.1, "bytes": [0xA9],
                     "top_logprobs": [{"token": "bytes:\\xa9", "logprob": -0.1, "bytes": [0xA9]},
                                      {"token": "!", "logprob": -3.0, "bytes": [33]}]}


def _script(manager: FakeManager, prompt: bool = True) -> None:  # noqa: F811
    manager.script = ([PromptLogprobs(PROMPT)] if prompt else []) + [
        TextChunk("", 1, [OUT[0]]), TextChunk("é au", 2, [OUT[1]]), _stats("length", completion=2)]


def test_completions_echo_with_logprobs_scores_every_prompt(http: TestClient, manager: FakeManager) -> None:  # noqa: F811
    _script(manager)
    body = http.post("/v1/completions", json={"model": "toolmodel", "prompt": ["Caf", "Caf"], "echo": True,
                                              "logprobs": 1, "max_tokens": 2}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    choice = body["choices"][1]
    assert choice["text"] == "Café au" and choice["finish_reason"] == "length"
    assert choice["logprobs"]["tokens"] == ["", "Caf", "bytes:\\xc3", "bytes:\\xa9", " au"]
    assert choice["logprobs"]["token_logprobs"][0] is None
    assert body["usage"]["prompt_tokens"] == 20 and body["usage"]["completion_tokens"] == 4  # both prompts
    assert [(r.logprobs, r.prompt_logprobs, r.prompt) for r in manager.requests] == [(1, True, "Caf")] * 2


def test_completions_without_echo_stream_in_parts(http: TestClient, manager: FakeManager) -> None:  # noqa: F811
    _script(manager, prompt=False)
    body = http.post("/v1/completions", json={"model": "toolmodel", "prompt": "Caf", "logprobs": 0}).json()
    lp = body["choices"][0]["logprobs"]
    assert body["choices"][0]["text"] == "é au" and lp["tokens"] == ["bytes:\\xa9", " au"]
    assert lp["text_offset"] == [0, 1] and lp["top_logprobs"][0] == {"bytes:\\xa9": -0.1, "!": -3.0}
    assert manager.requests[-1].prompt_logprobs is False
    _script(manager)
    r = http.post("/v1/completions", json={"model": "toolmodel", "prompt": "Caf", "echo": True, "logprobs": 1,
                                           "stream": True})
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    parts = [c["choices"][0] for c in chunks]
    assert [p["text"] for p in parts] == ["Caf", "", "é au", ""]  # the prompt (scored) first, then each token
    assert [t for p in parts if p["logprobs"] for t in p["logprobs"]["tokens"]] == \
        ["", "Caf", "bytes:\\xc3", "bytes:\\xa9", " au"]
    assert [o for p in parts if p["logprobs"] for o in p["logprobs"]["text_offset"]] == [0, 0, 3, 3, 4]


def test_token_id_prompts_become_prefix_tokens(http: TestClient, manager: FakeManager) -> None:  # noqa: F811
    _script(manager)
    body = http.post("/v1/completions", json={"model": "toolmodel", "prompt": [[11, 12], [13]], "echo": True,
                                              "max_tokens": 2}).json()
    assert [(r.prompt, r.prefix_tokens, r.prompt_logprobs) for r in manager.requests] == \
        [("", [11, 12], True), ("", [13], True)]  # echo of ids: their text comes from the scored pieces
    assert body["choices"][0]["text"] == "Caf\ufffdé au" and body["choices"][0]["logprobs"] is None


def test_chat_logprobs_stream_and_whole(http: TestClient, manager: FakeManager) -> None:  # noqa: F811
    _script(manager, prompt=False)
    msgs = [{"role": "user", "content": "hi"}]
    body = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": msgs, "logprobs": True,
                                                   "top_logprobs": 2}).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == ["bytes:\\xa9", " au"] and manager.requests[-1].logprobs == 2
    assert body["choices"][0]["logprobs"]["refusal"] is None
    r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": msgs, "logprobs": True, "stream": True})
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    streamed = [e for c in chunks for e in ((c["choices"][0]["logprobs"] or {}).get("content") or [])]
    assert [e["logprob"] for e in streamed] == [-0.1, -1.5]
    plain = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": msgs}).json()
    assert plain["choices"][0]["logprobs"] is None and manager.requests[-1].logprobs is None


def test_ollama_logprobs_shapes(app: Any, manager: FakeManager) -> None:  # noqa: F811
    from flexi.api import ollama as ol

    app.include_router(ol.router)
    ollama_http = TestClient(app)
    _script(manager, prompt=False)
    out = ollama_http.post("/api/generate", json={"model": "toolmodel", "prompt": "x", "stream": False, "raw": True,
                                                  "logprobs": True, "top_logprobs": 1}).json()
    assert [e["token"] for e in out["logprobs"]] == ["bytes:\\xa9", " au"] and manager.requests[-1].logprobs == 1
    r = ollama_http.post("/api/chat", json={"model": "toolmodel", "messages": [{"role": "user", "content": "x"}],
                                            "logprobs": True})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [e["logprob"] for line in lines for e in line.get("logprobs", [])] == [-0.1, -1.5]
    assert "logprobs" not in lines[-1]  # the final line carries the stats only
    r = ollama_http.post("/api/generate", json={"model": "toolmodel", "prompt": "x", "top_logprobs": 3})
    assert r.status_code == 400 and "needs logprobs" in r.text  # (this app renders every error OpenAI's way)


def test_template_targets_refuse_echo_scoring(template_http: TestClient, manager: FakeManager) -> None:  # noqa: F811
    r = template_http.post("/v1/completions", json={"model": "template/feedback", "prompt": "{}", "echo": True,
                                                    "logprobs": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "echo", r.text
    r = template_http.post("/v1/completions", json={"model": "template/feedback", "prompt": [1, 2]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    assert manager.requests == []
