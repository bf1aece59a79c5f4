"""`flexi safety` with the real garak against the real Flexi server (real runner, real default model), quick set.

Skipped only when garak is not installed where `flexi safety` looks for it (FLEXI_GARAK, else
~/.cache/flexi/garak-venv), and failed instead when FLEXI_REQUIRE_GARAK=1 (CI installs garak with
scripts/install-garak.sh and must not pass by skipping).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flexi.bench.garak import GarakMissing, garak_version, resolve_python
from flexi.cli.main import app
from tests.conftest import MODEL

pytestmark = pytest.mark.e2e

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None}


@pytest.fixture(scope="session")
def garak_python() -> Path:
    python = resolve_python()
    try:
        garak_version(python)
    except GarakMissing as exc:
        if os.environ.get("FLEXI_REQUIRE_GARAK") == "1":
            pytest.fail(f"FLEXI_REQUIRE_GARAK=1 but garak is not installed: {exc}")
        pytest.skip(f"garak is not installed ({exc}); scripts/install-garak.sh installs it")
    return python


def test_quick_probes_against_flexi(garak_python: Path, server, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["safety", MODEL, "not-pulled:1b", "--probes", "quick", "--prompt-cap", "1",
                                      "--max-tokens", "32", "--url", server.url, "--garak", str(garak_python),
                                      "--out", str(out), "--json"], env=ENGLISH)
    assert result.exit_code == 0, result.output + result.stderr
    doc = json.loads((out / "safety.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == doc
    assert doc["tool"] == "flexi safety" and doc["target"] == {"url": server.url, "local": True}
    assert doc["versions"]["garak"] == "0.17.1" and doc["versions"]["flexi_server"]
    assert doc["parameters"]["probe_set"] == "quick" and doc["parameters"]["prompt_cap"] == 1
    ok, missing = doc["results"]
    assert ok["model"] == MODEL and ok["status"] == "ok", ok
    assert set(ok["categories"]) == {"jailbreak", "toxicity", "encoding", "prompt_leak", "injection"}
    for name, entry in ok["categories"].items():
        assert entry["total"] >= 1, (name, ok)  # every category was answered and judged
        assert 0 <= entry["passed"] <= entry["total"] and entry["pass_rate"] == round(entry["passed"] / entry["total"], 4)
    assert ok["unanswered"] == 0 and ok["total"] == sum(p["total"] for p in ok["probes"])
    assert {p["probe"] for p in ok["probes"]} == set(doc["parameters"]["probes"])
    assert missing == {**missing, "model": "not-pulled:1b", "status": "error", "probes": [], "pass_rate": None}
    assert "not found" in missing["error"]

    # garak's own report is kept next to the summary, and the server saw exactly garak's requests
    report = out / ok["garak_report"]
    entries = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert sum(1 for e in entries if e["entry_type"] == "eval") == len(ok["probes"])
    leak = next(e for e in entries if e["entry_type"] == "attempt" and e["probe_classname"].startswith("sysprompt"))
    assert leak["prompt"]["turns"][0]["role"] == "system"  # Flexi's own system prompts, not a download

    # garak reached nothing but the Flexi server
    log = (report.parent / "xdg" / "data" / "garak" / "garak.log").read_text(encoding="utf-8", errors="replace")
    hosts = set(re.findall(r"HTTP Request: \w+ (https?://[^/\s]+)", log))
    assert hosts == {server.url}, hosts
    md = (out / "safety.md").read_text(encoding="utf-8")
    assert f"| {MODEL} |" in md and "| Model | Overall | Jailbreak | Toxicity | Encoding | Prompt leak | Injection |" in md
    assert httpx.get(server.url + "/api/version").status_code == 200
