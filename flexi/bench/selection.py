"""The selection report: quality × speed × memory × energy × openness per model, the Pareto front and one
recommendation per use case. A pure function of the merged records (`selection_inputs.Candidate`).

How missing values are treated (the report must never invent a measurement):
- Pareto front: a dimension takes part when at least one model has a value. A model dominates another only
  when both have values on every taking-part dimension, it is at least as good on all and better on one; a
  missing value is neither better nor worse, so a model measured on fewer dimensions is never dominated
  (and is flagged `incomplete`). Equal models do not dominate each other (ties stay on the front).
- Use cases: each weighs a few criteria, every criterion scored 0..1 (see `criterion_values`). A criterion
  nobody has a value for is left out and named under `not_measured`; a model without a value where others
  have one scores 0 there, so a model is never recommended for what it was not measured on. A use case
  needs at least one measured criterion (catalogue facts alone recommend nothing). A model whose runner
  would not fit the memory budget for the use case's context and users, or whose context is too short, is
  excluded with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flexi import __version__
from flexi.bench.report import machine_description
from flexi.bench.selection_inputs import Candidate
from flexi.catalog import DIMENSIONS
from flexi.i18n import CATALOGUE, LOCALES, text
from flexi.scheduler.memory import runner_memory

GIB = 1024**3
FULL_CONTEXT = 32768  # a context of 32k tokens or more scores 1 for the context criterion
TOOL = "flexi recommend"


@dataclass(frozen=True)
class UseCase:
    """What a use case needs (context per user) and how it weighs the criteria (weights sum to 1)."""

    id: str
    ctx: int
    weights: dict[str, float]


USE_CASES: tuple[UseCase, ...] = (
    UseCase("chat", 4096, {"quality": 0.35, "speed": 0.30, "german": 0.20, "safety": 0.15}),
    UseCase("course_assistant", 8192, {"quality": 0.30, "german": 0.20, "context": 0.15, "openness": 0.15,
                                       "safety": 0.10, "speed": 0.10}),
    UseCase("essay_feedback", 8192, {"quality": 0.50, "german": 0.30, "context": 0.20}),
    UseCase("coding", 8192, {"coding": 0.50, "quality": 0.25, "speed": 0.25}),
)
# Pareto dimensions: name and direction (+1 higher is better, -1 lower is better).
PARETO: tuple[tuple[str, int], ...] = (("quality", 1), ("speed", 1), ("memory", -1), ("energy", -1), ("openness", 1))


# --- per-model facts ------------------------------------------------------------------------------


def german_documented(candidate: Candidate) -> bool | None:
    """Does the catalogue name German among the family's languages? None when the family is unknown."""
    if candidate.family is None:
        return None
    langs = " ".join(candidate.family.languages).lower()
    return any(lang.strip().lower() == "de" for lang in candidate.family.languages) or "eu languages" in langs


def planned_memory(candidate: Candidate, ctx: int, users: int) -> int | None:
    """The runner memory admission would reserve (the planner's formula), None when not installed here."""
    model = candidate.installed
    if model is None:
        return None
    trained = model.info.context_length
    return runner_memory(model.file_size, model.info, min(ctx, trained) if trained else ctx, users).total


def memory_value(candidate: Candidate) -> tuple[int | None, str | None]:
    """Measured runner memory when a bench measured it, else the planner's figure for one user at 4k."""
    if candidate.memory_bytes is not None:
        return candidate.memory_bytes, candidate.memory_source
    planned = planned_memory(candidate, 4096, 1)
    return (planned, "planner") if planned is not None else (None, None)


def pareto_values(candidate: Candidate) -> dict[str, float | None]:
    memory, _ = memory_value(candidate)
    return {"quality": candidate.quality, "speed": candidate.tg_tokens_per_s,
            "memory": float(memory) if memory is not None else None, "energy": candidate.energy_j_per_1k,
            "openness": float(candidate.family.open_count) if candidate.family else None}


def pareto_front(points: dict[str, dict[str, float | None]],
                 dimensions: Sequence[tuple[str, int]] = PARETO) -> tuple[list[str], list[str]]:
    """(names on the front, dimensions that took part). See the module docstring for missing values."""
    active = [(d, sign) for d, sign in dimensions if any(p.get(d) is not None for p in points.values())]

    def dominates(a: dict[str, float | None], b: dict[str, float | None]) -> bool:
        better = False
        for d, sign in active:
            va, vb = a.get(d), b.get(d)
            if va is None or vb is None:
                return False
            if sign * va < sign * vb:
                return False
            better = better or sign * va > sign * vb
        return better

    front = [name for name, p in points.items()
             if not any(dominates(q, p) for other, q in points.items() if other != name)]
    return sorted(front), [d for d, _ in active]


# --- use cases ------------------------------------------------------------------------------------


def criterion_values(criterion: str, pool: Sequence[Candidate]) -> tuple[dict[str, float | None], str | None]:
    """Each candidate's 0..1 value of a criterion, and where the values come from (None: nobody has one).

    quality: eval average; coding: mean of coding tasks; safety: pass rate over all probes; speed:
    single-stream generation tokens/s relative to the fastest candidate; german: eval average_de when
    any candidate has one, else 1/0 for German named in the catalogue; context: context length / 32k
    (at most 1); openness: open dimensions / 13 (European Open Source AI Index)."""
    if criterion in ("quality", "coding", "safety"):
        values = {c.model: getattr(c, criterion) for c in pool}
        return values, ("measured" if any(v is not None for v in values.values()) else None)
    if criterion == "speed":
        best = max((c.tg_tokens_per_s for c in pool if c.tg_tokens_per_s), default=None)
        return ({c.model: c.tg_tokens_per_s / best if best and c.tg_tokens_per_s else None for c in pool},
                "measured" if best else None)
    if criterion == "german":
        if any(c.quality_de is not None for c in pool):
            return {c.model: c.quality_de for c in pool}, "measured"
        documented = {c.model: german_documented(c) for c in pool}
        values = {m: (None if v is None else float(v)) for m, v in documented.items()}
        return values, ("catalogue" if any(v is not None for v in values.values()) else None)
    if criterion == "context":
        values = {c.model: min(1.0, c.context_length / FULL_CONTEXT) if c.context_length else None for c in pool}
        return values, ("catalogue" if any(v is not None for v in values.values()) else None)
    if criterion == "openness":
        values = {c.model: c.family.open_count / len(DIMENSIONS) if c.family else None for c in pool}
        return values, ("catalogue" if any(v is not None for v in values.values()) else None)
    raise ValueError(f"unknown criterion {criterion!r}")


def _both(key: str, **values: Any) -> dict[str, str]:
    return {locale: text(key, locale, **{k: (v(locale) if callable(v) else v) for k, v in values.items()})
            for locale in LOCALES}


def _gib(n: int) -> Any:
    return lambda locale: f"{_fmt(n / GIB, 2, locale)} GiB"


def _exclusion(candidate: Candidate, case: UseCase, users: int, budget: int | None) -> dict[str, str] | None:
    if candidate.context_length and candidate.context_length < case.ctx:
        return _both("select_excluded_context", model=candidate.model, has=candidate.context_length, needs=case.ctx)
    needed = planned_memory(candidate, case.ctx, users)
    if needed is not None and budget is not None and needed > budget:
        return _both("select_excluded_memory", model=candidate.model, needed=_gib(needed), users=users, ctx=case.ctx,
                     budget=_gib(budget))
    return None


def _label(criterion: str, source: str | None, locale: str) -> str:
    suffix = f"_{source}" if criterion == "german" and source in ("measured", "catalogue") else ""
    return text(f"select_crit_{criterion}{suffix}", locale)


def recommend(case: UseCase, candidates: Sequence[Candidate], users: int, budget: int | None) -> dict[str, Any]:
    """The best candidate for one use case, the runner-up, the ranking, the exclusions and what is missing."""
    excluded, pool = [], []
    for c in candidates:
        reason = _exclusion(c, case, users, budget)
        if reason is None and not c.measured:
            reason = _both("select_excluded_unmeasured", model=c.model)
        if reason is not None:
            excluded.append({"model": c.model, "reason": reason})
        else:
            pool.append(c)
    values, sources = {}, {}
    for criterion in case.weights:
        values[criterion], sources[criterion] = criterion_values(criterion, pool)
    used = [k for k in case.weights if sources[k] is not None]
    missing = [k for k in case.weights if sources[k] is None]
    note = _both("select_no_coding") if "coding" in missing else None
    measured = [k for k in used if sources[k] == "measured"]
    out: dict[str, Any] = {"model": None, "runner_up": None, "score": None, "ctx": case.ctx, "users": users,
                           "weights": case.weights, "criteria": {k: sources[k] for k in case.weights},
                           "not_measured": missing, "ranking": [], "excluded": excluded, "note": note}
    if not pool or not measured:
        out["reason"] = (_both("select_no_recommendation",
                               criteria=lambda loc: ", ".join(_label(k, None, loc) for k in missing) or "–")
                         if pool else _both("select_no_candidates"))
        return out
    total = sum(case.weights[k] for k in used)
    ranking = []
    for c in pool:
        parts = {k: values[k].get(c.model) for k in used}
        score = sum(case.weights[k] * (parts[k] or 0.0) for k in used) / total
        ranking.append({"model": c.model, "score": round(score, 4), "parts": parts})
    ranking.sort(key=lambda r: (-r["score"], r["model"].lower()))
    best = ranking[0]
    runner_up = ranking[1] if len(ranking) > 1 else None
    by_model = {c.model: c for c in pool}
    chosen = by_model[best["model"]]
    needed = planned_memory(chosen, case.ctx, users)
    memory = (_both("select_memory_fits", needed=_gib(needed), users=users, ctx=case.ctx,
                    budget=_gib(budget) if budget is not None else "–") if needed is not None
              else _both("select_memory_unknown"))
    details = {locale: ", ".join(f"{_label(k, sources[k], locale)} {_fmt(best['parts'][k], 2, locale)}" for k in used)
               for locale in LOCALES}
    reason = {}
    for locale in LOCALES:
        parts = [text("select_reason", locale, model=best["model"], score=_fmt(best["score"], 2, locale),
                      use_case=_case_name(case.id, locale), details=details[locale])]
        if missing:
            parts.append(text("select_reason_missing", locale,
                              criteria=", ".join(_label(k, None, locale) for k in missing)))
        parts.append(memory[locale])
        if runner_up:
            parts.append(text("select_reason_runner_up", locale, model=runner_up["model"],
                              score=_fmt(runner_up["score"], 2, locale)))
        if note:
            parts.append(note[locale])
        reason[locale] = " ".join(parts)
    out.update(model=best["model"], runner_up=runner_up["model"] if runner_up else None, score=best["score"],
               ranking=ranking, reason=reason)
    return out


def _case_name(case_id: str, locale: str) -> str:
    key = f"select_case_{case_id}"
    return text(key, locale) if key in CATALOGUE else case_id


def _fmt(value: float | None, digits: int, locale: str) -> str:
    if value is None:
        return "–"
    s = f"{value:.{digits}f}"
    return s.replace(".", ",") if locale == "de" else s


# --- the report -----------------------------------------------------------------------------------


def _result(c: Candidate, users: int, cases: Sequence[UseCase], front: set[str], incomplete: set[str]) -> dict[str, Any]:
    memory, memory_source = memory_value(c)
    family = c.family
    not_measured = [name for name, value in (("quality", c.quality), ("speed", c.tg_tokens_per_s),
                                             ("memory", memory), ("energy", c.energy_j_per_1k), ("safety", c.safety))
                    if value is None]
    return {
        "model": c.model,
        "installed": c.installed is not None,
        "family": None if family is None else {
            "id": family.id, "name": family.name, "licence_id": family.licence_id, "openness_score": family.score(),
            "open_count": family.open_count, "unknown_count": family.unknown_count,
            "languages": list(family.languages), "german_note": dict(family.german_note)},
        "context_length": c.context_length,
        "german_documented": german_documented(c),
        "quality": {"average": c.quality, "average_de": c.quality_de, "coding": c.coding, "scores": c.scores},
        "speed": {"tg_tokens_per_s": c.tg_tokens_per_s, "pp_tokens_per_s": c.pp_tokens_per_s, "ttft_s": c.ttft_s,
                  "streams": c.speed_streams, "streams_n": c.streams_n,
                  "tg_total_tokens_per_s_n": c.tg_total_tokens_per_s_n, "error": c.bench_error},
        "memory": {"bytes": memory, "source": memory_source,
                   "planned": {case.id: planned_memory(c, case.ctx, users) for case in cases}},
        "energy": {"j_per_1k_output_tokens": c.energy_j_per_1k, "reason": c.energy_reason},
        "safety": {"pass_rate": c.safety, "categories": c.safety_categories},
        "quants": c.quants,
        "not_measured": not_measured,
        "pareto": c.model in front,
        "pareto_incomplete": c.model in incomplete,
        "sources": c.sources,
    }


def build_selection(candidates: Sequence[Candidate], *, users: int, budget: int | None, budget_label: str,
                    cases: Sequence[UseCase] = USE_CASES, started_at: str | None = None) -> dict[str, Any]:
    """The whole report (written to selection.json) from merged records; no I/O."""
    started = started_at or datetime.now(UTC).isoformat(timespec="seconds")
    points = {c.model: pareto_values(c) for c in candidates if c.measured}
    front, dims = pareto_front(points)
    incomplete = {m for m, p in points.items() if any(p.get(d) is None for d in dims)}
    return {
        "tool": TOOL,
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"url": None, "local": True},
        "versions": {"flexi_client": __version__},
        "machine": machine_description(),
        "parameters": {"users": users, "budget_bytes": budget, "budget": budget_label,
                       "use_cases": {c.id: {"ctx": c.ctx, "weights": c.weights} for c in cases},
                       "pareto_dimensions": dims,
                       "inputs": [{"tool": t, "source": s, "finished_at": f} for t, s, f in sorted(
                           {(s["tool"], s["source"], s["finished_at"]) for c in candidates for s in c.sources})]},
        "results": [_result(c, users, cases, set(front), incomplete) for c in candidates],
        "pareto": front,
        "recommendations": {case.id: recommend(case, candidates, users, budget) for case in cases},
    }
