"""`flexi bench` against the real Flexi server (real runner, real default model), tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from tests.conftest import MODEL

pytestmark = pytest.mark.e2e

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None}


def test_bench_against_flexi(server, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", MODEL, "--url", server.url, "--streams", "1,2", "--prompt-tokens", "32",
                                      "--output-tokens", "8", "--repeat", "1", "--out", str(out)], env=ENGLISH)
    assert result.exit_code == 0, result.output + result.stderr
    doc = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert doc["parameters"]["streams"] == [1, 2] and doc["target"]["local"] is True
    assert doc["versions"]["flexi_server"] and doc["versions"]["llama_cpp_python"]
    assert doc["machine"]["cpu_cores"] >= 1 and doc["machine"]["ram_gib"] > 0 and "gpus" in doc["machine"]
    [res] = doc["results"]
    assert res["model"] == MODEL
    assert [m["status"] for m in res["requests"]] == ["ok"] * 3, res["requests"]
    for row in res["rows"]:
        assert row["errors"] == 0
        assert row["pp_tokens_per_s"] > 0 and row["tg_tokens_per_s"] > 0 and row["tg_total_tokens_per_s"] > 0
        assert 0 < row["ttft_mean_s"] < row["wall_s"]
        assert 20 <= row["prompt_tokens_mean"] <= 64  # about the 32 asked for, counted by the server
        assert row["output_tokens_mean"] == 8  # end of sequence ignored: exactly the tokens asked for
        energy = row["energy"]
        if energy["measured"]:
            assert energy["joules"] > 0 and energy["j_per_1k_output_tokens"] > 0 and energy["sources"]
        else:  # never a figure without a measurement
            assert energy["joules"] is None and energy["j_per_1k_output_tokens"] is None and energy["reason"]
    memory = res["memory"]
    assert memory["source"] == "runner_rss", memory  # the server is local: measured, not the estimate
    assert 50 * 2**20 < memory["bytes"] <= memory["peak_bytes"] < 8 * 2**30
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert f"| {MODEL} | 1 |" in md and f"| {MODEL} | 2 |" in md and "runner RSS" in md
    assert "GEN TOK/S" in result.output and MODEL in result.output


def test_bench_rejects_bad_streams(tmp_path: Path):
    result = CliRunner().invoke(app, ["bench", MODEL, "--streams", "0", "--out", str(tmp_path)], env=ENGLISH)
    assert result.exit_code == 1 and 'invalid --streams "0"' in result.stderr
    result = CliRunner().invoke(app, ["bench", MODEL, "--api", "grpc", "--out", str(tmp_path)], env=ENGLISH)
    assert result.exit_code == 1 and 'unknown --api "grpc"' in result.stderr


def test_bench_through_the_openai_dialect(server, tmp_path: Path):
    """Any OpenAI-compatible server (llama-server, vLLM) can be measured; here Flexi's own /v1, timed by the client."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", MODEL, "--api", "openai", "--url", server.url, "--streams", "1",
                                      "--prompt-tokens", "32", "--output-tokens", "8", "--repeat", "1",
                                      "--out", str(out)], env=ENGLISH)
    assert result.exit_code == 0, result.output + result.stderr
    doc = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert doc["parameters"]["api"] == "openai"
    [row] = doc["results"][0]["rows"]
    assert row["errors"] == 0 and row["rates"] == "client" and row["output_tokens_mean"] == 8
    assert row["tg_tokens_per_s"] > 0 and row["pp_tokens_per_s"] > 0 and 0 < row["ttft_mean_s"] < row["wall_s"]
    assert 20 <= row["prompt_tokens_mean"] <= 64  # from the usage chunk (stream_options.include_usage)


def test_unknown_model_is_a_row_not_a_crash(server, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "no-such-model:1b", "--url", server.url, "--streams", "1",
                                      "--repeat", "1", "--out", str(out)], env=ENGLISH)
    assert result.exit_code == 0, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr and "1 of 1 requests failed" in result.stderr
    [res] = json.loads((out / "bench.json").read_text(encoding="utf-8"))["results"]
    assert res["rows"] == [] and "no-such-model" in res["warmup_error"]
    assert "| no-such-model:1b | – |" in (out / "bench.md").read_text(encoding="utf-8")
