"""`flexi loadtest` without a model: statistics, prompt files, Markdown, both wire dialects
against a fake transport, the batch orchestration, and argument / reachability errors."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flexi.bench import report
from flexi.bench.clients import (
    CONNECTION_ERROR,
    HTTP_ERROR,
    OK,
    STREAM_ERROR,
    TIMEOUT,
    GenerationParams,
    request_body,
    stream_chat,
)
from flexi.bench.loadtest import (
    LoadTestConfig,
    LoadTestError,
    document,
    normalize_url,
    parse_levels,
    run_loadtest,
)
from flexi.bench.prompts import (
    PAPER_PROMPTS,
    PromptFileError,
    load_prompts,
    parse_prompts,
)
from flexi.cli.main import app

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None}


# --- statistics ------------------------------------------------------------------------------


def test_mean_and_sample_sd_with_known_numbers():
    values = [2, 4, 4, 4, 5, 5, 7, 9]
    assert report.mean(values) == 5
    assert report.sample_sd(values) == pytest.approx(math.sqrt(32 / 7))  # n - 1 in the denominator
    assert report.sample_sd([3.5]) == 0.0
    assert report.mean([]) is None and report.sample_sd([]) is None


def test_percentiles_interpolate_linearly_like_numpy():
    assert report.percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert report.percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert report.percentile(range(1, 101), 95) == pytest.approx(95.05)
    assert report.percentile([7, 1], 0) == 1 and report.percentile([7, 1], 100) == 7
    assert report.percentile([10], 95) == 10
    assert report.percentile([], 50) is None
    with pytest.raises(ValueError):
        report.percentile([1], 101)


def _req(pi, level, status=OK, latency=1.0, ttft=0.1, tokens=10, http_status=200):
    return {"prompt_index": pi, "level": level, "repetition": 0, "slot": 0, "status": status,
            "http_status": http_status, "error": None if status == OK else "x", "latency_s": latency,
            "ttft_s": ttft, "output_tokens": tokens, "tokens_from": "usage", "started_s": 0.0}


def test_summary_counts_timeouts_in_latency_but_not_other_errors():
    requests = [_req(0, 2, latency=1.0, ttft=0.1, tokens=10),
                _req(0, 2, latency=3.0, ttft=0.3, tokens=20),
                _req(0, 2, TIMEOUT, latency=5.0, ttft=0.5, tokens=4, http_status=200),
                _req(0, 2, HTTP_ERROR, latency=0.01, ttft=None, tokens=0, http_status=503)]
    batches = [{"prompt_index": 0, "level": 2, "repetition": 0, "wall_s": 4.0},
               {"prompt_index": 0, "level": 2, "repetition": 1, "wall_s": 6.0}]
    [row] = report.summarize(requests, batches, ["p"], [2])
    assert (row["n"], row["ok"], row["errors"], row["timeouts"]) == (4, 2, 1, 1)
    assert row["error_kinds"] == {"http_error 503": 1}
    assert row["latency_mean_s"] == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert row["latency_sd_s"] == pytest.approx(2.0)
    assert row["ttft_p50_s"] == pytest.approx(0.3)
    assert row["ttft_p95_s"] == pytest.approx(0.48)
    assert row["output_tokens"] == 34
    assert row["tokens_per_s"] == pytest.approx(34 / 10)


def test_summary_of_only_failures_has_no_latency():
    [row] = report.summarize([_req(0, 1, HTTP_ERROR, ttft=None, tokens=0, http_status=404)],
                             [{"prompt_index": 0, "level": 1, "repetition": 0, "wall_s": 0.0}], ["p"], [1])
    assert row["latency_mean_s"] is None and row["tokens_per_s"] is None and row["errors"] == 1
    assert report.latency_cell(row) == "– (1 error)"


# --- prompts -----------------------------------------------------------------------------------


def test_the_paper_prompts_are_the_five_of_appendix_a():
    assert len(PAPER_PROMPTS) == 5
    assert PAPER_PROMPTS[0] == "Write a step-by-step guide on how to bake a chocolate cake from scratch."
    assert PAPER_PROMPTS[4] == "I’d like to book a flight for 4 to Seattle in U.S."


def test_prompt_file_blocks_are_separated_by_blank_lines():
    text = "\ufeffFirst prompt\nstill the first\n\n  \t\nSecond\r\n\r\nThird  \n\n\n"
    assert parse_prompts(text) == ["First prompt\nstill the first", "Second", "Third"]


def test_prompt_file_as_json_list():
    assert parse_prompts('  ["a", " b ", ""]\n') == ["a", "b"]
    assert parse_prompts("[Note] not JSON\n\nsecond") == ["[Note] not JSON", "second"]
    with pytest.raises(PromptFileError, match="list of strings"):
        parse_prompts('[1, 2]')
    with pytest.raises(PromptFileError, match="invalid JSON"):
        parse_prompts("[oops", as_json=True)
    with pytest.raises(PromptFileError, match="no prompts"):
        parse_prompts("\n  \n")


def test_load_prompts_from_files(tmp_path: Path):
    (tmp_path / "p.json").write_text(json.dumps(["x", "y"]), encoding="utf-8")
    (tmp_path / "p.txt").write_text("x\n\ny\n", encoding="utf-8")
    (tmp_path / "bad.json").write_text("x\n\ny\n", encoding="utf-8")
    assert load_prompts(tmp_path / "p.json") == ["x", "y"] == load_prompts(tmp_path / "p.txt")
    with pytest.raises(PromptFileError, match="invalid JSON"):
        load_prompts(tmp_path / "bad.json")
    with pytest.raises(PromptFileError, match="not found"):
        load_prompts(tmp_path / "missing.txt")


# --- arguments ---------------------------------------------------------------------------------


def test_levels_and_urls():
    assert parse_levels("1,10,30") == [1, 10, 30]
    assert parse_levels(" 1, 2,2 ") == [1, 2]
    for bad in ("0", "1,a", "", "1,,2", "-1"):
        with pytest.raises(LoadTestError):
            parse_levels(bad)
    assert normalize_url("localhost:8080", "ollama") == "http://localhost:8080"
    assert normalize_url("https://llm.example.edu/v1/", "openai") == "https://llm.example.edu"
    assert normalize_url("http://h:1/api", "ollama") == "http://h:1"
    with pytest.raises(LoadTestError):
        normalize_url("ftp://h", "ollama")


def test_default_url_comes_from_flexi_host(monkeypatch):
    monkeypatch.setenv("FLEXI_HOST", "0.0.0.0:9999")
    assert normalize_url(None, "ollama") == "http://127.0.0.1:9999"
    monkeypatch.delenv("FLEXI_HOST")
    assert normalize_url(None, "ollama") == "http://127.0.0.1:11434"


def test_request_bodies_of_both_dialects():
    full = {"model": "m", "max_tokens": 7, "temperature": 0.5, "ignore_eos": True}
    ollama = request_body(GenerationParams(api="ollama", **full), "hi")
    assert ollama == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                      "options": {"num_predict": 7, "temperature": 0.5, "ignore_eos": True}}
    openai = request_body(GenerationParams(api="openai", **full), "hi")
    assert openai["stream"] is True and openai["stream_options"] == {"include_usage": True}
    assert (openai["max_tokens"], openai["temperature"], openai["ignore_eos"]) == (7, 0.5, True)
    assert "options" not in request_body(GenerationParams(api="ollama", model="m"), "hi")
    assert "max_tokens" not in request_body(GenerationParams(api="openai", model="m"), "hi")


# --- Markdown --------------------------------------------------------------------------------------


def _doc(levels=(1, 10, 30)):
    prompts = ["Write a | guide", "Second prompt " * 10]
    summary = []
    for pi in range(2):
        for lv in levels:
            summary.append({"prompt_index": pi, "prompt": prompts[pi], "level": lv, "n": lv, "ok": lv,
                            "errors": 1 if (pi, lv) == (1, 30) else 0, "timeouts": 2 if (pi, lv) == (1, 30) else 0,
                            "latency_mean_s": 12.25 + lv, "latency_sd_s": 0.5, "ttft_p50_s": 0.1,
                            "ttft_p95_s": 0.25, "tokens_per_s": 123.45, "output_tokens": 100, "wall_s": 1.0})
    return {"started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:01:00+00:00",
            "target": {"url": "http://x:1", "api": "ollama", "endpoint": "/api/chat"},
            "parameters": {"api": "ollama", "model": "m:1", "levels": list(levels), "repetitions": 1,
                           "max_tokens": None, "temperature": None, "ignore_eos": False, "timeout_s": 300.0},
            "machine": {"cpu_model": "CPU", "cpu_cores": 2, "ram_gib": 8.0, "os": "Linux"},
            "prompts": prompts, "summary": summary}


def test_markdown_is_laid_out_like_appendix_a():
    md = report.markdown(_doc())
    lines = md.splitlines()
    header = lines.index("| Prompt | 1 CQ | 10 CQ | 30 CQ |")
    assert lines[header + 1] == "|---|---:|---:|---:|"
    assert lines[header + 2] == "| Write a \\| guide | 13.25 ± 0.50 s | 22.25 ± 0.50 s | 42.25 ± 0.50 s |"
    second = lines[header + 3]
    assert second.startswith("| Second prompt Second prompt") and "…" in second
    assert second.endswith("| 42.25 ± 0.50 s (2 timeouts, 1 error) |")
    stats = lines.index("| Prompt | CQ | n | TTFT p50 [s] | TTFT p95 [s] | Output tokens/s | Errors | Timeouts |")
    assert lines[stats + 2] == "| Write a \\| guide | 1 | 1 | 0.10 | 0.25 | 123.5 | 0 | 0 |"
    assert len([ln for ln in lines[stats + 2:] if ln.startswith("| ")]) == 6  # 2 prompts × 3 levels
    assert "model `m:1`" in md and "2 cores" in md


def test_chart_is_a_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    report.latency_chart(_doc(), tmp_path / "latency.png")
    assert (tmp_path / "latency.png").read_bytes().startswith(b"\x89PNG")


def test_machine_description_has_cpu_cores_and_ram():
    machine = report.machine_description()
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1
    assert machine["ram_bytes"] is None or machine["ram_bytes"] > 0


# --- one request against a fake server -------------------------------------------------------------


def _ndjson(*objs) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def _sse(*objs) -> bytes:
    return b"".join(b"data: " + (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n\n" for o in objs)


async def _one(handler, api="ollama", timeout=5.0):
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await stream_chat(client, "http://fake", GenerationParams(api=api, model="m"), "hi", timeout)


def test_ollama_stream_is_measured():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/chat"
        return httpx.Response(200, content=_ndjson(
            {"message": {"role": "assistant", "content": ""}, "done": False},
            {"message": {"role": "assistant", "content": "Hel"}, "done": False},
            {"message": {"role": "assistant", "content": "lo"}, "done": False},
            {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 3}))

    rec = asyncio.run(_one(handler))
    assert rec.status == OK and rec.http_status == 200 and rec.error is None
    assert (rec.output_tokens, rec.tokens_from) == (3, "usage")
    assert rec.ttft_s is not None and 0 <= rec.ttft_s <= rec.latency_s


def test_openai_stream_uses_usage_else_counts_chunks():
    chunks = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"delta": {"content": "a"}}]}, {"choices": [{"delta": {"content": "b"}}]}]

    def with_usage(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.url.path == "/v1/chat/completions" and body["stream_options"] == {"include_usage": True}
        return httpx.Response(200, content=_sse(*chunks, {"choices": [], "usage": {"completion_tokens": 5}}, b"[DONE]"))

    rec = asyncio.run(_one(with_usage, api="openai"))
    assert rec.status == OK and (rec.output_tokens, rec.tokens_from) == (5, "usage")

    rec = asyncio.run(_one(lambda r: httpx.Response(200, content=_sse(*chunks, b"[DONE]")), api="openai"))
    assert rec.status == OK and (rec.output_tokens, rec.tokens_from) == (2, "chunks")


def test_failures_become_records():
    rec = asyncio.run(_one(lambda r: httpx.Response(404, json={"error": 'model "m" not found'})))
    assert (rec.status, rec.http_status, rec.error) == (HTTP_ERROR, 404, 'model "m" not found')

    rec = asyncio.run(_one(lambda r: httpx.Response(500, json={"error": {"message": "boom"}}), api="openai"))
    assert (rec.status, rec.http_status, rec.error) == (HTTP_ERROR, 500, "boom")

    rec = asyncio.run(_one(lambda r: httpx.Response(200, content=_ndjson(
        {"message": {"content": "x"}, "done": False}, {"error": "runner crashed"}))))
    assert (rec.status, rec.error, rec.output_tokens) == (STREAM_ERROR, "runner crashed", 1)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    rec = asyncio.run(_one(refuse))
    assert rec.status == CONNECTION_ERROR and "refused" in rec.error


def test_a_slow_answer_times_out_with_its_partial_output():
    async def trickle():
        yield _ndjson({"message": {"content": "x"}, "done": False})
        await asyncio.sleep(10)

    rec = asyncio.run(_one(lambda r: httpx.Response(200, content=trickle()), timeout=0.3))
    assert rec.status == TIMEOUT and 0.3 <= rec.latency_s < 2
    assert rec.output_tokens == 1 and rec.ttft_s is not None


# --- orchestration ------------------------------------------------------------------------------------


def test_batches_run_every_prompt_level_and_repetition_concurrently():
    in_flight = peak = 0
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        body = json.loads(request.content)
        seen.append(body["messages"][0]["content"])
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        if body["model"] == "warm" and body["options"]["num_predict"] == 1:
            return httpx.Response(200, content=_ndjson({"message": {"content": "w"}, "done": True, "eval_count": 1}))
        return httpx.Response(200, content=_ndjson({"message": {"content": "t"}, "done": False},
                                                   {"done": True, "eval_count": 2}))

    config = LoadTestConfig(url="http://fake", model="warm", prompts=["A", "B"], levels=[1, 3], repetitions=2,
                            max_tokens=8, timeout=5)
    result = asyncio.run(run_loadtest(config, server={"probe_status": 200},
                                      transport=httpx.MockTransport(handler)))
    assert result.warmup is not None and result.warmup.output_tokens == 1
    assert len(result.records) == config.total_requests == 2 * 2 * (1 + 3)
    assert seen[0] == "A" and seen[1:] == ["A"] * 8 + ["B"] * 8  # warm-up, then prompt by prompt
    assert peak == 3
    assert [(b["prompt_index"], b["level"], b["repetition"]) for b in result.batches] == [
        (0, 1, 0), (0, 1, 1), (0, 3, 0), (0, 3, 1), (1, 1, 0), (1, 1, 1), (1, 3, 0), (1, 3, 1)]
    batch = [r for r in result.records if (r.prompt_index, r.level, r.repetition) == (1, 3, 1)]
    assert sorted(r.slot for r in batch) == [0, 1, 2]
    # released together: every request started before any of them ended (sequential ones would not overlap)
    assert max(r.started_s for r in batch) < min(r.started_s + r.latency_s for r in batch)
    doc = document(result, machine={"cpu_model": "x", "cpu_cores": 1, "ram_gib": 1, "os": "y"})
    assert all(row["output_tokens"] == 2 * row["n"] and row["errors"] == 0 for row in doc["summary"])
    assert doc["parameters"]["api_key_set"] is False and json.dumps(doc)


# --- the command -----------------------------------------------------------------------------------------


def invoke(*args: str, **env: str | None):
    return CliRunner().invoke(app, ["loadtest", *args], env={**ENGLISH, **env})


def test_unreachable_target_is_a_clear_error(tmp_path: Path):
    out = tmp_path / "out"
    result = invoke("--url", "http://127.0.0.1:9", "--out", str(out), "--levels", "1")
    assert result.exit_code == 1
    assert "Error: cannot reach http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--levels", "1,zero"], 'invalid --levels "1,zero"'),
    (["--api", "grpc"], 'unknown --api "grpc"'),
    (["--repetitions", "0"], "--repetitions must be greater than 0"),
    (["--timeout", "0"], "--timeout must be greater than 0"),
    (["--max-tokens", "0"], "--max-tokens must be greater than 0"),
    (["--prompts", "/nonexistent/prompts.txt"], "prompt file not found"),
])
def test_bad_arguments_exit_1(args, message):
    result = invoke("--url", "http://127.0.0.1:9", *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr


def test_messages_follow_the_language():
    result = invoke("--url", "http://127.0.0.1:9", "--levels", "x", LANG="de_DE.UTF-8")
    assert result.exit_code == 1 and "Fehler: ungültige --levels" in result.stderr
