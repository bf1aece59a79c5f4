"""From lm-eval's results to the report's scores: one number in 0..1 per task, higher is better.

Which metric: the first of PREFERRED the task reports (acc_norm before acc, as the Open LLM Leaderboard
and so the FLEXI paper's Table 4 did for ARC and HellaSwag), with the filter `none`, else `flexible-extract`,
else any. Only metrics whose value lies in 0..1 and that lm-eval marks higher-is-better qualify. Pure.
"""

from __future__ import annotations

from typing import Any

PREFERRED = ("acc_norm", "acc", "exact_match", "mc2", "mc1", "f1", "em", "bleu_acc", "pass@1")
FILTERS = ("none", "flexible-extract", "strict-match")


def language_of(task: str, metadata: dict[str, Any] | None = None) -> str:
    """"de" or "en": the task's own `metadata.language`, else German when the name says so (`…_de`, `de_…`)."""
    declared = (metadata or {}).get("language")
    if declared in ("de", "en"):
        return declared
    parts = task.lower().replace("-", "_").split("_")
    return "de" if "de" in parts or "german" in parts or "deu" in parts else "en"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pick_metric(task_results: dict[str, Any], higher_is_better: dict[str, bool] | None = None) -> tuple[str, str] | None:
    """(metric, filter) for the task's score, or None when nothing fits."""
    available: dict[str, list[str]] = {}
    for key, value in task_results.items():
        metric, sep, filt = key.partition(",")
        if not sep or metric.endswith("_stderr") or _number(value) is None:
            continue
        if not 0.0 <= float(value) <= 1.0 or (higher_is_better or {}).get(metric) is False:
            continue
        available.setdefault(metric, []).append(filt)
    ordered = [m for m in PREFERRED if m in available] + sorted(m for m in available if m not in PREFERRED)
    if not ordered:
        return None
    metric = ordered[0]
    filters = available[metric]
    return metric, next((f for f in FILTERS if f in filters), min(filters))


def task_score(results: dict[str, Any], task: str) -> dict[str, Any] | None:
    """{"score", "metric", "n", "language", "stderr"} for `task` in one lm-eval results dict, or None."""
    task_results = (results.get("results") or {}).get(task)
    if not task_results:
        return None
    picked = pick_metric(task_results, (results.get("higher_is_better") or {}).get(task))
    if picked is None:
        return None
    metric, filt = picked
    samples = results.get("n-samples") or {}
    members = (results.get("group_subtasks") or {}).get(task) or [task]
    n = sum(int((samples.get(m) or {}).get("effective") or 0) for m in members)
    metadata = ((results.get("configs") or {}).get(task) or {}).get("metadata")
    return {"score": float(task_results[f"{metric},{filt}"]),
            "metric": metric if filt == "none" else f"{metric} ({filt})",
            "n": n, "language": language_of(task, metadata if isinstance(metadata, dict) else None),
            "stderr": _number(task_results.get(f"{metric}_stderr,{filt}"))}


def averages(scores: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Mean of all task scores, of the German ones and of the English ones (None when there are none)."""
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    ok = {name: s for name, s in scores.items() if s.get("score") is not None}
    return {"average": mean([s["score"] for s in ok.values()]),
            "average_de": mean([s["score"] for s in ok.values() if s["language"] == "de"]),
            "average_en": mean([s["score"] for s in ok.values() if s["language"] == "en"])}
