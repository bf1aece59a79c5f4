"""The selection report's pure parts: the Pareto front with ties and missing values, the use-case
weighting, exclusions by memory and context, and what happens when nothing relevant was measured."""

from __future__ import annotations

import pytest

from flexi.bench.selection import (
    USE_CASES,
    UseCase,
    build_selection,
    criterion_values,
    pareto_front,
    planned_memory,
    recommend,
)
from flexi.bench.selection_inputs import Candidate, Installed
from flexi.catalog import load_catalog
from flexi.scheduler.memory import runner_memory
from flexi.store.gguf_meta import read_gguf_info
from tests.store.test_gguf_meta import SMOLLM2

CHAT = next(c for c in USE_CASES if c.id == "chat")
CODING = next(c for c in USE_CASES if c.id == "coding")
ESSAYS = next(c for c in USE_CASES if c.id == "essay_feedback")
GIB = 1024**3


def smollm2_installed(name: str = "smollm2:135m") -> Installed:
    return Installed(name, SMOLLM2.stat().st_size, read_gguf_info(SMOLLM2))


# --- Pareto front ---------------------------------------------------------------------------------


def test_a_single_model_is_the_front():
    assert pareto_front({"a": {"quality": 0.3, "speed": 10.0}}) == (["a"], ["quality", "speed"])


def test_a_model_better_on_every_dimension_dominates_and_memory_counts_lower_as_better():
    points = {"big": {"quality": 0.6, "speed": 20.0, "memory": 8e9},
              "small": {"quality": 0.6, "speed": 20.0, "memory": 1e9},
              "slow": {"quality": 0.5, "speed": 10.0, "memory": 2e9},
              "fast": {"quality": 0.2, "speed": 90.0, "memory": 3e9}}
    front, dims = pareto_front(points)
    assert front == ["fast", "small"]  # big: same quality and speed, more memory; slow: worse on all
    assert dims == ["quality", "speed", "memory"]


def test_ties_stay_on_the_front_together():
    same = {"quality": 0.4, "speed": 30.0, "memory": 1e9}
    assert pareto_front({"x": dict(same), "y": dict(same)})[0] == ["x", "y"]


def test_a_missing_value_is_neither_better_nor_worse():
    points = {"measured": {"quality": 0.9, "speed": 100.0, "memory": 1e9},
              "no_quality": {"quality": None, "speed": 10.0, "memory": 2e9},
              "worse": {"quality": 0.1, "speed": 5.0, "memory": 3e9}}
    front, dims = pareto_front(points)
    assert front == ["measured", "no_quality"] and "worse" not in front
    assert "energy" not in dims and "openness" not in dims  # nobody has them: not part of the comparison


# --- criteria and use cases -----------------------------------------------------------------------


def test_speed_is_relative_to_the_fastest_and_german_prefers_the_eval_over_the_catalogue():
    smol = load_catalog().get("smollm2")
    a = Candidate("a", tg_tokens_per_s=50.0, family=smol)
    b = Candidate("b", tg_tokens_per_s=25.0)
    assert criterion_values("speed", [a, b]) == ({"a": 1.0, "b": 0.5}, "measured")
    assert criterion_values("german", [a, b]) == ({"a": 0.0, "b": None}, "catalogue")  # SmolLM2: English only
    b.quality_de = 0.4
    assert criterion_values("german", [a, b]) == ({"a": None, "b": 0.4}, "measured")


def test_chat_weighs_quality_speed_german_and_safety():
    a = Candidate("a", quality=0.6, quality_de=0.5, tg_tokens_per_s=20.0, safety=0.9)
    b = Candidate("b", quality=0.3, quality_de=0.1, tg_tokens_per_s=40.0, safety=0.5)
    rec = recommend(CHAT, [a, b], users=4, budget=None)
    expected_a = 0.35 * 0.6 + 0.30 * 0.5 + 0.20 * 0.5 + 0.15 * 0.9
    expected_b = 0.35 * 0.3 + 0.30 * 1.0 + 0.20 * 0.1 + 0.15 * 0.5
    assert rec["ranking"][0]["score"] == pytest.approx(expected_a, abs=1e-4)
    assert rec["ranking"][1]["score"] == pytest.approx(expected_b, abs=1e-4)
    assert (rec["model"], rec["runner_up"], rec["not_measured"]) == ("a", "b", [])
    assert "a has the best weighted score for chat" in rec["reason"]["en"] and "Runner-up: b" in rec["reason"]["en"]
    assert rec["reason"]["de"].endswith("Zweitbestes Modell: b (0,50).")


def test_a_criterion_nobody_measured_is_left_out_and_one_model_missing_a_value_scores_zero_there():
    a = Candidate("a", quality=0.5, tg_tokens_per_s=10.0)
    b = Candidate("b", tg_tokens_per_s=10.0)  # no eval: quality counts 0, never a guess
    rec = recommend(CHAT, [a, b], users=1, budget=None)
    assert rec["not_measured"] == ["german", "safety"]
    assert rec["criteria"] == {"quality": "measured", "speed": "measured", "german": None, "safety": None}
    total = 0.35 + 0.30
    assert rec["ranking"] == [
        {"model": "a", "score": pytest.approx((0.35 * 0.5 + 0.30) / total, abs=1e-4), "parts": {"quality": 0.5, "speed": 1.0}},
        {"model": "b", "score": pytest.approx(0.30 / total, abs=1e-4), "parts": {"quality": None, "speed": 1.0}},
    ]
    assert "Not measured, so not weighed: German, safety." in rec["reason"]["en"]


def test_catalogue_facts_alone_recommend_nothing():
    smol = Candidate("smol", family=load_catalog().get("smollm2"), context_length=8192, tg_tokens_per_s=50.0)
    rec = recommend(ESSAYS, [smol], users=1, budget=None)  # quality, German, context: only the catalogue knows
    assert rec["model"] is None and rec["runner_up"] is None and rec["ranking"] == []
    assert rec["reason"]["en"].startswith("No recommendation") and "quality" in rec["reason"]["en"]
    assert rec["reason"]["de"].startswith("Keine Empfehlung") and "Qualität" in rec["reason"]["de"]


def test_coding_without_a_coding_task_says_so_and_with_one_it_decides():
    a = Candidate("a", quality=0.6, tg_tokens_per_s=30.0)
    b = Candidate("b", quality=0.5, tg_tokens_per_s=30.0)
    rec = recommend(CODING, [a, b], users=1, budget=None)
    assert rec["model"] == "a" and rec["not_measured"] == ["coding"]
    assert rec["note"]["en"].startswith("No coding benchmark measured") and "No coding benchmark" in rec["reason"]["en"]
    a.coding, b.coding = 0.1, 0.6
    rec = recommend(CODING, [a, b], users=1, budget=None)
    assert rec["model"] == "b" and rec["note"] is None and rec["not_measured"] == []


def test_a_model_whose_runner_does_not_fit_or_whose_context_is_short_is_excluded_with_a_reason():
    fits = Candidate("small", installed=smollm2_installed("small"), tg_tokens_per_s=10.0, context_length=8192)
    big = Candidate("big", installed=smollm2_installed("big"), tg_tokens_per_s=90.0, context_length=8192)
    short = Candidate("short", tg_tokens_per_s=99.0, context_length=2048)
    needed_one = runner_memory(fits.installed.file_size, fits.installed.info, 4096, 1).total
    needed_two = runner_memory(fits.installed.file_size, fits.installed.info, 4096, 2).total
    budget = (needed_one + needed_two) // 2
    assert planned_memory(big, 4096, 2) == needed_two
    rec = recommend(CHAT, [fits, short], users=1, budget=budget)
    assert rec["model"] == "small" and [e["model"] for e in rec["excluded"]] == ["short"]
    rec = recommend(CHAT, [big, short], users=2, budget=budget)
    assert rec["model"] is None and rec["reason"]["en"] == "No recommendation: every model was excluded."
    assert [e["model"] for e in rec["excluded"]] == ["big", "short"]
    assert "needs" in rec["excluded"][0]["reason"]["en"] and "for 2 user(s) at 4096 tokens" in rec["excluded"][0]["reason"]["en"]
    assert "braucht" in rec["excluded"][0]["reason"]["de"]
    assert rec["excluded"][1]["reason"]["en"] == "short: context of 2048 tokens, this use case needs 4096."
    assert recommend(UseCase("tiny", 1024, {"speed": 1.0}), [short], users=1, budget=None)["model"] == "short"


def test_an_installed_model_nobody_measured_is_excluded_and_not_on_the_front():
    measured = Candidate("measured", tg_tokens_per_s=10.0)
    idle = Candidate("idle", installed=smollm2_installed("idle"), family=load_catalog().get("smollm2"))
    doc = build_selection([idle, measured], users=1, budget=4 * GIB, budget_label="--mem")
    assert doc["pareto"] == ["measured"]
    chat = doc["recommendations"]["chat"]
    assert chat["model"] == "measured" and chat["excluded"][0]["model"] == "idle"
    assert "not measured yet" in chat["excluded"][0]["reason"]["en"]
    idle_row = next(r for r in doc["results"] if r["model"] == "idle")
    assert idle_row["memory"]["source"] == "planner" and idle_row["pareto"] is False
    assert set(idle_row["not_measured"]) == {"quality", "speed", "energy", "safety"}


def test_the_document_has_the_shared_report_shape():
    doc = build_selection([Candidate("a", quality=0.5, tg_tokens_per_s=10.0)], users=2, budget=None, budget_label="none")
    assert doc["tool"] == "flexi recommend"
    for key in ("started_at", "finished_at", "target", "versions", "machine", "parameters", "results", "pareto",
                "recommendations"):
        assert key in doc, key
    assert set(doc["recommendations"]) == {"chat", "course_assistant", "essay_feedback", "coding"}
    for rec in doc["recommendations"].values():
        assert set(rec["reason"]) == {"en", "de"} and "runner_up" in rec and "model" in rec
    row = doc["results"][0]
    assert row["memory"]["bytes"] is None and row["energy"]["j_per_1k_output_tokens"] is None
    assert row["pareto"] and row["pareto_incomplete"] is False  # nobody has memory/energy/openness: not compared
