"""Stored model reports (SQLite and PostgreSQL): one row per model and tool run, a summary computed from the
result, the newest per kind for the installed file only (a model replaced under its name starts empty),
text PostgreSQL cannot hold refused, oversized reports refused, old reports trimmed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from flexi.access import admin_ops as ops
from flexi.access.admin_ops import model_reports

BENCH = json.loads((Path(__file__).parents[2] / "docs/models/smollm2-135m-bench/bench.json").read_text())
SAFETY = {"model": "m:1", "pass_rate": 0.75, "categories": {"encoding": {"passed": 3, "total": 4, "pass_rate": 0.75}},
          "probes": [{"probe": "encoding.InjectBase64", "detector": "encoding.DecodeMatch", "category": "encoding",
                      "passed": 3, "total": 4}]}


def test_summaries_come_from_the_results() -> None:
    bench = ops.summarize("bench", BENCH["results"][0])
    row = BENCH["results"][0]["rows"][0]
    assert bench["tg_tokens_per_s"] == pytest.approx(row["tg_tokens_per_s"])
    assert bench["pp_tokens_per_s"] == pytest.approx(row["pp_tokens_per_s"])
    assert bench["streams"] == 4 and bench["memory_bytes"] == BENCH["results"][0]["memory"]["peak_bytes"]
    assert "joules_per_1k_tokens" not in bench  # energy was not measurable on that machine: absent, not 0
    assert ops.summarize("safety", SAFETY) == {"pass_rate": 0.75, "categories": {"encoding": 0.75}}
    assert ops.summarize("eval", {"scores": {"a": {"score": 0.5}}, "average": 0.5, "average_de": None}) == \
        {"average": 0.5, "average_de": None, "tasks": 1, "tokens_per_s": None}
    assert ops.summarize("quant", {"quant": "Q8_0", "size_bytes": 10, "perplexity": {"de": 9.5, "en": float("nan")}}) \
        == {"quant": "Q8_0", "size_bytes": 10.0, "perplexity": {"de": 9.5, "en": None}, "tg_tokens_per_s": None}


def test_newest_per_kind_for_the_installed_file_only(session: Session) -> None:
    context = {"machine": {"cpu_cores": 2}}
    first = ops.save_model_report(session, model="m:1", digest="aaa", tool="flexi safety", result=SAFETY, context=context)
    newer = ops.save_model_report(session, model="m:1", digest="aaa", tool="flexi safety",
                                  result={**SAFETY, "pass_rate": 0.5})
    ops.save_model_report(session, model="m:1", digest="aaa", tool="flexi bench", result=BENCH["results"][0])
    ops.save_model_report(session, model="m:1", digest="bbb", tool="flexi eval", result={"average": 0.9})
    session.commit()
    assert first.report["machine"] == {"cpu_cores": 2} and first.report["result"]["pass_rate"] == 0.75
    latest = ops.latest_model_reports(session, {"m:1": "aaa", "other:1": None})
    assert set(latest) == {"m:1"} and set(latest["m:1"]) == {"safety", "bench"}  # the eval measured another file
    assert latest["m:1"]["safety"].id == newer.id and latest["m:1"]["safety"].summary["pass_rate"] == 0.5
    assert ops.latest_model_reports(session, {"m:1": "bbb"})["m:1"]["eval"].summary["average"] == 0.9
    assert [r.kind for r in ops.list_model_reports(session, model="m:1")] == ["eval", "bench", "safety", "safety"]
    ops.delete_model_report(session, first.id)
    with pytest.raises(ops.AdminError) as err:
        ops.get_model_report(session, first.id)
    assert err.value.status == 404


def test_bad_reports_are_refused(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    for tool, result, status in [("flexi nonsense", SAFETY, 400),
                                 ("flexi safety", {**SAFETY, "note": "a\x00b"}, 400),
                                 ("flexi safety", {**SAFETY, "note": "\ud800"}, 400),
                                 ("flexi safety", {**SAFETY, "blob": "x" * (model_reports.MAX_REPORT_BYTES + 1)}, 413)]:
        with pytest.raises(ops.AdminError) as err:
            ops.save_model_report(session, model="m:1", digest="a", tool=tool, result=result)
        assert err.value.status == status
    assert ops.list_model_reports(session) == []
    for missing in (0, 2**40, "x"):
        with pytest.raises(ops.AdminError):
            ops.delete_model_report(session, missing)  # type: ignore[arg-type]


def test_old_reports_are_trimmed(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_reports, "KEEP_PER_MODEL_KIND", 3)
    ids = [ops.save_model_report(session, model="m:1", digest="a", tool="flexi safety", result=SAFETY).id
           for _ in range(5)]
    ops.save_model_report(session, model="n:1", digest="a", tool="flexi safety", result=SAFETY)
    session.commit()
    assert [r.id for r in ops.list_model_reports(session, model="m:1")] == ids[:1:-1]
    assert len(ops.list_model_reports(session, model="n:1")) == 1


def test_odd_shapes_from_a_report_file_never_break_the_summary(session: Session) -> None:
    for rows in (5, "x", [{"ok": True, "streams": "a"}, {"ok": True, "streams": 1, "tg_tokens_per_s": 3.0}],
                 [None, {"ok": True, "streams": True}]):
        summary = ops.summarize("bench", {"rows": rows})
        assert summary.get("tg_tokens_per_s") in (None, 3.0)
    quant = ops.summarize("quant", {"quant": {"nested": "x" * 100}, "perplexity": {"de" * 10: 2.0}})
    assert quant["quant"] is None and list(quant["perplexity"]) == ["dededede"]
    stored = ops.save_model_report(session, model="m:1", digest=None, tool="flexi bench", result={"rows": 5})
    assert ops.latest_model_reports(session, {"m:1": None})["m:1"]["bench"].id == stored.id  # a remote model
    assert ops.latest_model_reports(session, {"m:1": None})["m:1"]["bench"].report == {}  # summary only
    assert ops.latest_model_reports(session, {"m:1": None}, with_report=True)["m:1"]["bench"].report["result"] == {"rows": 5}
