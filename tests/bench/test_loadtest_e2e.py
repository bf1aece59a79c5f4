"""`flexi loadtest` against the real Flexi server (real runner, real default model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app

pytestmark = pytest.mark.e2e

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None}


def run(tmp_path: Path, *args: str) -> tuple[object, Path]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\n\nName a colour.\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["loadtest", "--levels", "1,2", "--max-tokens", "4", "--prompts", str(prompts),
                                      "--out", str(out), *args], env=ENGLISH)
    return result, out


@pytest.mark.parametrize("api", ["ollama", "openai"])
def test_loadtest_against_flexi(server, tmp_path: Path, api: str):
    url = server.url + ("/v1" if api == "openai" else "")
    result, out = run(tmp_path, "--url", url, "--api", api, "--temperature", "0")
    assert result.exit_code == 0, result.output + result.stderr
    assert (out / "results.md").is_file() and (out / "results.json").is_file()
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["target"]["url"] == server.url and doc["target"]["api"] == api
    assert doc["parameters"]["levels"] == [1, 2] and doc["parameters"]["max_tokens"] == 4
    assert doc["machine"]["cpu_cores"] >= 1 and doc["machine"]["cpu_model"]
    requests = doc["requests"]
    assert len(requests) == 2 * (1 + 2)
    assert all(r["status"] == "ok" and r["error"] is None for r in requests), requests
    assert all(0 < r["output_tokens"] <= 4 and r["tokens_from"] == "usage" for r in requests)
    assert all(r["ttft_s"] is not None and r["ttft_s"] <= r["latency_s"] for r in requests)
    pair = [r for r in requests if r["prompt_index"] == 1 and r["level"] == 2]
    # both released by the barrier: each started before the other one ended (sequential requests would not overlap)
    assert max(r["started_s"] for r in pair) < min(r["started_s"] + r["latency_s"] for r in pair), pair
    for row in doc["summary"]:
        assert row["errors"] == row["timeouts"] == 0 and row["tokens_per_s"] > 0
        assert row["latency_mean_s"] > 0 and row["ttft_p50_s"] is not None

    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| Prompt | 1 CQ | 2 CQ |" in md and "| Say hello. |" in md
    assert md.strip() in result.output  # the summary is printed at the end


def test_unknown_model_is_recorded_as_errors(server, tmp_path: Path):
    result, out = run(tmp_path, "--url", server.url, "--model", "no-such-model:1b", "--no-chart")
    assert result.exit_code == 0, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert "6 of 6 requests failed" in result.stderr
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["warmup"]["http_status"] == 404
    assert {(r["status"], r["http_status"]) for r in doc["requests"]} == {("http_error", 404)}
    assert all("not found" in r["error"] for r in doc["requests"])
    assert all(row["errors"] == row["n"] and row["latency_mean_s"] is None for row in doc["summary"])
    assert not (out / "latency.png").exists()
    assert "– (2 errors)" in (out / "results.md").read_text(encoding="utf-8")
