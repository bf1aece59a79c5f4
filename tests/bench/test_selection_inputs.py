"""Loading and merging the selection report's inputs: mixed report files, bad JSON, unknown tools,
reports for models not installed, model names spelled differently, the newest report winning."""

from __future__ import annotations

import json
from pathlib import Path

from flexi.bench.selection_inputs import (
    BENCH,
    EVAL,
    Installed,
    Report,
    installed_models,
    load_report_files,
    merge,
    model_key,
)
from flexi.store.gguf_meta import GGUFInfo, read_gguf_info
from flexi.store.store import ModelStore
from tests.store.test_gguf_meta import SMOLLM2

ROOT = Path(__file__).resolve().parents[2]
BENCH_JSON = ROOT / "docs" / "models" / "smollm2-135m-bench" / "bench.json"
DATA = Path(__file__).parent / "data"


def _installed(name: str = "smollm2:135m") -> Installed:
    return Installed(name, SMOLLM2.stat().st_size, read_gguf_info(SMOLLM2))


def _doc(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_model_names_compare_without_case_and_default_tag():
    assert model_key("SmolLM2:135M") == model_key("smollm2:135m") == model_key("library/smollm2:135m")
    assert model_key("qwen") == model_key("qwen:latest")


def test_bench_eval_and_safety_of_one_model_merge_and_a_model_not_installed_has_no_local_facts():
    reports = [Report(_doc(BENCH_JSON), "bench.json"), Report(_doc(DATA / "eval_small.json"), "eval.json"),
               Report(_doc(DATA / "safety_small.json"), "safety.json")]
    qwen, smol = merge(reports, [_installed()])  # sorted by name
    assert smol.model == "smollm2:135m" and qwen.model == "Qwen2.5:0.5B"
    assert smol.tg_tokens_per_s == _doc(BENCH_JSON)["results"][0]["rows"][0]["tg_tokens_per_s"]  # the bench wins over eval
    assert smol.tg_total_tokens_per_s_n is not None and smol.streams_n == 4
    assert smol.memory_bytes == _doc(BENCH_JSON)["results"][0]["memory"]["bytes"] and smol.memory_source == "runner_rss"
    assert smol.energy_j_per_1k is None and "no readable power source" in smol.energy_reason
    assert (smol.quality, smol.quality_de, smol.coding, smol.safety) == (0.25, 0.2, 0.0, 0.55)
    assert smol.installed is not None and smol.family is not None and smol.family.id == "smollm2"
    assert smol.context_length == 8192
    assert sorted(s["tool"] for s in smol.sources) == ["flexi bench", "flexi eval", "flexi safety"]
    # not installed here: speed from the eval run, no family, no context, no planner
    assert qwen.installed is None and qwen.family is None and qwen.context_length is None
    assert (qwen.tg_tokens_per_s, qwen.quality, qwen.coding, qwen.safety) == (20.0, 0.4125, 0.2, 0.8)
    assert qwen.memory_bytes is None


def test_the_newest_report_of_a_tool_wins():
    old, new = _doc(DATA / "eval_small.json"), _doc(DATA / "eval_small.json")
    old["finished_at"], new["finished_at"] = "2026-01-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"
    new["results"] = [{**new["results"][0], "average": 0.9}]
    (_qwen, smol) = merge([Report(new, "new"), Report(old, "old")])
    assert smol.quality == 0.9


def test_a_failed_bench_is_no_speed_and_installed_models_nobody_measured_are_listed():
    doc = _doc(BENCH_JSON)
    doc["results"] = [{"model": "smollm2:135m", "warmup_error": "model not found", "rows": [], "requests": [],
                       "memory": {"source": None, "bytes": None}}]
    embedding = GGUFInfo(architecture="bert", capabilities=["embedding"])
    candidates = merge([Report(doc, "b")], [_installed(), _installed("other:1b"), Installed("minilm:l6", 1, embedding)])
    assert [c.model for c in candidates] == ["other:1b", "smollm2:135m"]  # embedding models are no candidates
    other, smol = candidates
    assert smol.tg_tokens_per_s is None and smol.bench_error == "model not found" and not smol.measured
    assert other.sources == [] and not other.measured and other.installed is not None
    doc["results"] = [{"model": "smollm2:135m", "memory": {}, "rows": [
        {"streams": 1, "n": 3, "ok": 0, "error_kinds": ["timeout: no complete answer within 1 s"],
         "tg_tokens_per_s": None, "pp_tokens_per_s": None, "energy": {"measured": False, "reason": "none"}}]}]
    (smol,) = merge([Report(doc, "b")])
    assert smol.bench_error == "timeout: no complete answer within 1 s" and smol.tg_tokens_per_s is None


def test_loading_mixed_files_reports_every_problem_and_keeps_the_good_ones(tmp_path):
    scan = tmp_path / "reports"
    (scan / "sub").mkdir(parents=True)
    (scan / "sub" / "bench.json").write_text(BENCH_JSON.read_text())
    (scan / "eval.json").write_text((DATA / "eval_small.json").read_text())
    (scan / "config.json").write_text('{"some": "other json"}')  # no tool field: not a report, silently skipped
    (scan / "selection.json").write_text('{"tool": "flexi recommend", "results": []}')  # our own output, too
    (scan / "broken.json").write_text("{not json")  # in a scanned directory: skipped silently too
    (scan / "future.json").write_text('{"tool": "flexi future", "results": []}')
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    no_results = tmp_path / "nores.json"
    no_results.write_text('{"tool": "flexi bench"}')
    loaded = load_report_files([(scan, None), (bad, None), (DATA / "safety_small.json", BENCH), (no_results, BENCH),
                                (tmp_path / "missing.json", EVAL)])
    assert sorted(r.tool for r in loaded.reports) == ["flexi bench", "flexi eval"]
    keys = [key for key, _ in loaded.problems]
    assert keys == ["select_unknown_tool", "select_bad_json", "select_wrong_tool", "select_no_results", "select_missing"]
    assert loaded.problems[0][1]["tool"] == "flexi future"
    assert loaded.problems[2][1] == {"path": str(DATA / "safety_small.json"), "tool": "flexi safety", "expected": BENCH}


def test_installed_models_reads_the_store_and_an_unreadable_store_is_empty(tmp_path):
    ModelStore(tmp_path / "models").create_from_file("mine:q4", SMOLLM2)
    (found,) = installed_models(tmp_path / "models")
    assert found.name == "mine:q4" and found.file_size == SMOLLM2.stat().st_size and found.info.context_length == 8192
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert installed_models(blocker / "models") == []
