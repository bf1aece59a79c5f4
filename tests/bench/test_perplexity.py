"""Perplexity windowing and aggregation (pure), and the measurement against a fake /v1/completions whose
"tokenizer" is one token per word, so the expected perplexity is known exactly."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import httpx
import pytest

from flexi.bench import perplexity as ppl
from flexi.bench.perplexity import PerplexityError, Window

ENGLISH = {"LC_ALL": "en_US.UTF-8"}


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")


# --- pure functions -------------------------------------------------------------------------------
def test_units_and_segments_give_the_text_back_exactly():
    text = "Es ist,  als wäre\nviel vernachlässigt.\n\nIch habe eine Werkstatt. "
    units = ppl.split_units(text)
    assert "".join(units) == text
    assert units[:3] == ["Es", " ist,", "  als"]
    segments = ppl.make_segments(text, ctx=32, chars_per_token=2.0)  # about 8 characters each
    assert "".join(segments) == text and len(segments) > 3
    assert all(s[0].isspace() for s in segments[1:])  # cut only before whitespace


def test_windows_score_every_segment_once_with_half_a_window_of_context():
    counts = [10] * 20  # 200 tokens
    windows = ppl.plan_windows(counts, ctx=64)  # budget 63: 6 segments a window, overlap ≤ 31 → 3 segments
    assert windows[0] == Window(0, 6, 0)
    assert windows[1] == Window(3, 9, 6)
    scored = [i for w in windows for i in range(w.score_from, w.end)]
    assert scored == list(range(20))  # each segment's tokens exactly once, in order
    for w in windows:
        assert sum(counts[w.start:w.end]) <= 63  # fits with room for a BOS token
        if w.score_from:
            assert sum(counts[w.start:w.score_from]) >= 63 // 2 - 10  # at least about half a window of context


def test_windows_with_uneven_segments_and_a_text_that_fits_in_one():
    assert ppl.plan_windows([5, 7, 3], ctx=64) == [Window(0, 3, 0)]
    uneven = [3, 20, 1, 15, 9, 30, 2, 2, 25, 11]
    windows = ppl.plan_windows(uneven, ctx=64)
    assert [i for w in windows for i in range(w.score_from, w.end)] == list(range(len(uneven)))
    assert all(sum(uneven[w.start:w.end]) <= 63 for w in windows)
    assert ppl.plan_windows([], ctx=64) == []


def test_a_segment_longer_than_half_a_window_is_refused():
    with pytest.raises(PerplexityError, match="more than half a window"):
        ppl.plan_windows([10, 40, 10], ctx=64)


def test_aggregation_drops_nulls_and_takes_only_the_new_tokens():
    assert ppl.scored_logprobs([None, -1.0, -2.0], None) == [-1.0, -2.0]
    assert ppl.scored_logprobs([None, -1.0, -2.0, -3.0], 2) == [-2.0, -3.0]
    assert ppl.scored_logprobs([-1.0], 5) == [-1.0]
    assert ppl.perplexity_of([-1.0, -1.0]) == pytest.approx(math.e)
    assert ppl.perplexity_of([math.log(0.5)] * 3) == pytest.approx(2.0)
    with pytest.raises(PerplexityError):
        ppl.perplexity_of([])


def test_bos_detection():
    assert ppl.bos_tokens(11, 21, 31) == 1  # each alone carries a BOS, together once
    assert ppl.bos_tokens(10, 20, 30) == 0
    assert ppl.bos_tokens(10, 20, 33) == 0  # never negative


def test_shipped_texts_and_bad_text_files(tmp_path: Path):
    for lang in ("de", "en"):
        label, text = ppl.load_text(lang)
        assert label == lang and len(text.split()) > 900
    assert "Vaterlandes" in ppl.load_text("de")[1] and "palaeozoic" in ppl.load_text("en")[1]
    with pytest.raises(PerplexityError, match="not found"):
        ppl.load_text(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n", encoding="utf-8")
    with pytest.raises(PerplexityError, match="empty"):
        ppl.load_text(str(empty))
    with pytest.raises(PerplexityError, match="too small"):
        ppl.check_ctx(8)


# --- against a fake server ----------------------------------------------------------------------
def fake_server(bos: bool, calls: list[dict], offsets: bool = True) -> httpx.MockTransport:
    """One token per word; logprob of a word = −len(word)/10; the first token (BOS or word) is null;
    `text_offset` (OpenAI's shape) only when `offsets`."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        assert body["echo"] is True and body["logprobs"] == 0 and body["max_tokens"] == 0
        choices = []
        for i, prompt in enumerate(body["prompt"]):
            words = list(re.finditer(r"\s*\S+", prompt))  # a token carries its leading whitespace, like BPE
            values: list[float | None] = [-len(m.group().strip()) / 10 for m in words]
            starts = [m.start() for m in words]
            values, starts = ([None] + values, [0] + starts) if bos else ([None] + values[1:], starts)
            logprobs = {"token_logprobs": values, **({"text_offset": starts} if offsets else {})}
            choices.append({"index": i, "text": prompt, "logprobs": logprobs})
        return httpx.Response(200, json={"choices": list(reversed(choices))})  # order must not matter

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("offsets", [True, False])
@pytest.mark.parametrize("bos", [False, True])
async def test_measure_scores_every_word_once(bos: bool, offsets: bool):
    words = [f"w{'x' * (i % 7)}" for i in range(300)]
    text = " ".join(words)
    calls: list[dict] = []
    async with httpx.AsyncClient(transport=fake_server(bos, calls, offsets)) as client:
        result = await ppl.measure(client, ppl.Target(url="http://fake", model="m"), "t", text, ctx=64)
    scored = words if bos else words[1:]  # without BOS the first word has no prediction
    expected = math.exp(sum(len(w) / 10 for w in scored) / len(scored))
    assert result.perplexity == pytest.approx(expected)
    assert result.scored_tokens == len(scored) and result.text_tokens == 300
    assert result.windows > 5 and result.mismatched_windows == 0
    assert all(len(c["prompt"]) <= ppl.PROMPTS_PER_REQUEST for c in calls)
    counting = sum(len(c["prompt"]) for c in calls) - result.windows
    n = len(ppl.make_segments(text, 64))
    assert counting == math.ceil(n / 8) + (0 if offsets else n + 1)  # without offsets: each segment alone + a probe


def test_counts_and_scores_from_offsets():
    segments = ["ab", " cd ef", " g"]
    assert ppl.counts_from_offsets(segments, [0, 2, 5, 8]) == [1, 2, 1]
    assert ppl.counts_from_offsets(segments, [0, 0, 2, 5, 8]) == [1, 2, 1]  # a zero-length BOS is not counted
    assert ppl.scored_from_offset([None, -1.0, -2.0, -3.0], [0, 2, 5, 8], 5) == [-2.0, -3.0]
    assert ppl.scored_from_offset([None, -1.0, -2.0], [0, 2, 5], 0) == [-1.0, -2.0]


async def test_measure_refuses_a_text_shorter_than_a_window():
    async with httpx.AsyncClient(transport=fake_server(False, [])) as client:
        with pytest.raises(PerplexityError, match="fewer than one window"):
            await ppl.measure(client, ppl.Target(url="http://fake", model="m"), "t", "a b c d e f g", ctx=64)


async def test_a_server_without_prompt_logprobs_or_an_error_is_a_clear_error():
    no_logprobs = httpx.MockTransport(lambda r: httpx.Response(200, json={"choices": [{"index": 0, "text": ""}]}))
    async with httpx.AsyncClient(transport=no_logprobs) as client:
        with pytest.raises(PerplexityError, match="no prompt logprobs"):
            await ppl.prompt_logprobs(client, ppl.Target(url="http://fake", model="m"), ["x"])
    missing = httpx.MockTransport(lambda r: httpx.Response(404, json={"error": {"message": 'model "m" not found'}}))
    async with httpx.AsyncClient(transport=missing) as client:
        with pytest.raises(PerplexityError, match=r'HTTP 404\): model "m" not found'):
            await ppl.prompt_logprobs(client, ppl.Target(url="http://fake", model="m"), ["x"])
