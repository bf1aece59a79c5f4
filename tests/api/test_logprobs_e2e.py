"""Token log-probabilities end to end: the real server, the real default model, the official `openai` and
`ollama` clients — the requests lm-evaluation-harness (loglikelihood) and a perplexity run send."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e

MODEL = "smollm2:135m"
GREEDY = {"repeat_penalty": 1.0}  # temperature 0 alone keeps the default repeat penalty, which can pass over the top token


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def test_echo_scores_a_list_of_prompts_like_lm_eval_asks(client: openai.OpenAI) -> None:
    prompts = ["The capital of France is Paris", "Water boils at 100 degrees"]
    resp = client.completions.create(model=MODEL, prompt=prompts, echo=True, logprobs=1, max_tokens=1, temperature=0,
                                     seed=1, extra_body=GREEDY)
    assert [c.index for c in resp.choices] == [0, 1]
    total_prompt = 0
    for prompt, choice in zip(prompts, resp.choices):
        lp = choice.logprobs
        assert lp is not None and choice.text.startswith(prompt)
        n = len(lp.tokens or [])
        assert n == len(lp.token_logprobs or []) == len(lp.top_logprobs or []) == len(lp.text_offset or []) >= 4
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # type: ignore[index]
        assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])  # type: ignore[index]
        assert all(1 <= len(top) <= 2 for top in lp.top_logprobs[1:])  # type: ignore[index, arg-type]
        assert "".join(lp.tokens) == choice.text  # type: ignore[arg-type]
        assert lp.text_offset == sorted(lp.text_offset)  # type: ignore[type-var]
        assert all(choice.text[off:].startswith(tok) for tok, off in zip(lp.tokens, lp.text_offset))  # type: ignore[arg-type]
        # the generated token (lm-eval drops it with [ctxlen:-1]) is greedy: the best of its top logprobs
        assert lp.token_logprobs[-1] == pytest.approx(max(lp.top_logprobs[-1].values()), abs=1e-6)  # type: ignore[index, union-attr]
        total_prompt += n - 1
    assert resp.usage is not None and resp.usage.prompt_tokens == total_prompt
    assert resp.usage.completion_tokens == 2


def test_echoed_offsets_match_the_prompt_text_around_a_literal_control_token(client: openai.OpenAI) -> None:
    prompt = "a<|endoftext|>b"
    resp = client.completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=0, max_tokens=1, temperature=0,
                                     extra_body=GREEDY)
    choice = resp.choices[0]
    lp = choice.logprobs
    assert lp is not None and choice.text.startswith(prompt)
    tokens, offsets = lp.tokens or [], lp.text_offset or []
    assert "<|endoftext|>" in tokens  # one control token, written as it stands in the prompt
    ends = offsets[1:] + [len(choice.text)]
    assert [choice.text[start:end] for start, end in zip(offsets, ends)] == tokens
    assert offsets[len(tokens) - 1] == len(prompt)  # the generated token starts after the echoed prompt


def test_scoring_a_greedy_continuation_gives_the_logprobs_it_was_generated_with(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    # two tokens (" Paris", "."): text that tokenizes back into the same tokens ("\n" "\n" would become "\n\n")
    gen = client.completions.create(model=MODEL, prompt=prompt, logprobs=2, max_tokens=2, temperature=0,
                                    extra_body=GREEDY)
    lp = gen.choices[0].logprobs
    assert lp is not None and len(lp.tokens or []) == gen.usage.completion_tokens == 2  # type: ignore[union-attr]
    for value, top in zip(lp.token_logprobs or [], lp.top_logprobs or []):
        assert value == pytest.approx(max(top.values()), abs=1e-6)  # greedy: each token is the most likely one
    # perplexity-style: echo, max_tokens 0 — the prompt scored, nothing generated
    scored = client.completions.create(model=MODEL, prompt=prompt + gen.choices[0].text, echo=True, logprobs=0,
                                       max_tokens=0, temperature=0)
    slp = scored.choices[0].logprobs
    assert slp is not None and scored.usage is not None and scored.usage.completion_tokens == 0
    assert scored.choices[0].text == prompt + gen.choices[0].text and scored.choices[0].finish_reason == "length"
    assert slp.tokens[-2:] == lp.tokens  # type: ignore[index]
    assert sum(slp.token_logprobs[-2:]) == pytest.approx(sum(lp.token_logprobs), abs=1e-3)  # type: ignore[arg-type, index]
    perplexity = math.exp(-sum(slp.token_logprobs[1:]) / (len(slp.tokens) - 1))  # type: ignore[arg-type, index]
    assert 1 < perplexity < 1000

    # streamed: the same entries, in parts (the scored prompt first)
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=2, max_tokens=2,
                                            temperature=0, stream=True, extra_body=GREEDY))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens or []]
    values = [v for c in chunks if c.choices and c.choices[0].logprobs for v in c.choices[0].logprobs.token_logprobs or []]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == prompt + gen.choices[0].text
    assert streamed[-2:] == lp.tokens and values[0] is None
    assert values[-2:] == pytest.approx(lp.token_logprobs, abs=1e-4)


def test_chat_logprobs_with_top_alternatives(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "hi"}]
    resp = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0, logprobs=True,  # type: ignore[arg-type]
                                          top_logprobs=3, extra_body=GREEDY)
    content = resp.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == resp.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(e.token for e in content) == resp.choices[0].message.content
    for e in content:
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token
        assert e.logprob == pytest.approx(e.top_logprobs[0].logprob, abs=1e-6)
        assert bytes(e.bytes or []).decode() == e.token
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0,  # type: ignore[arg-type]
                                                 logprobs=True, top_logprobs=3, stream=True, extra_body=GREEDY))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or []]
    assert [e.token for e in streamed] == [e.token for e in content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content], abs=1e-4)


def test_ollama_logprobs(server: RunningServer) -> None:
    c = ollama.Client(host=server.url)
    out = c.generate(model=MODEL, prompt="Why is the sky blue?", logprobs=True, top_logprobs=2,
                     options={"num_predict": 4, "temperature": 0, "repeat_penalty": 1.0})
    assert out.logprobs is not None and len(out.logprobs) == out.eval_count == 4
    assert "".join(e.token for e in out.logprobs) == out.response
    assert all(len(e.top_logprobs or []) == 2 and e.top_logprobs[0].token == e.token for e in out.logprobs)  # type: ignore[index]
    parts = list(c.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], logprobs=True, stream=True,
                        options={"num_predict": 3, "temperature": 0}))
    entries = [e for p in parts for e in (p.logprobs or [])]
    assert len(entries) == 3 and all(e.logprob <= 0 and not e.top_logprobs for e in entries)
    plain = c.generate(model=MODEL, prompt="hi", options={"num_predict": 2})
    assert plain.logprobs is None  # not asked: not sent


def test_bad_logprob_requests_are_400_and_the_server_keeps_serving(server: RunningServer, client: openai.OpenAI) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        cases = [
            ("/v1/completions", {"prompt": "x", "logprobs": 6}, "logprobs"),
            ("/v1/completions", {"prompt": "x", "max_tokens": 0}, "max_tokens"),
            ("/v1/completions", {"prompt": ["x"] * 65, "echo": True, "logprobs": 1}, "prompt"),
            # beyond the context: the runner's exact token count refuses it (its message names the context)
            ("/v1/completions", {"prompt": "word " * 20_000, "echo": True, "logprobs": 1, "max_tokens": 0}, None),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True,
                                      "top_logprobs": 21}, "top_logprobs"),
        ]
        for path, extra, param in cases:
            r = http.post(path, json={"model": MODEL, **extra})
            assert r.status_code == 400, (extra, r.text)
            assert r.json()["error"]["param"] == param, r.json()
        r = http.post("/api/generate", json={"model": MODEL, "prompt": "x", "top_logprobs": 3, "stream": False})
        assert r.status_code == 400 and "logprobs" in r.json()["error"]
        r = http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "logprobs": True,
                                         "top_logprobs": 50, "stream": False})
        assert r.status_code == 400 and "top_logprobs" in r.json()["error"]
    ok = client.completions.create(model=MODEL, prompt=[[504, 3458, 314]], max_tokens=1, echo=True, logprobs=1)
    lp = ok.choices[0].logprobs  # a prompt of token ids: scored as given, its text the tokens' own
    assert lp is not None and len(lp.tokens or []) == 4 and lp.token_logprobs[0] is None  # type: ignore[index]
    assert ok.choices[0].text == "".join(lp.tokens or []) and ok.usage.prompt_tokens == 3  # type: ignore[union-attr]
