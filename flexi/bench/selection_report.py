"""selection.md and the terminal table of `flexi recommend`: pure functions of selection.json.

selection.md is in English like bench.md (runs from different machines compare), with each
recommendation's German reason next to the English one; unmeasured values read "not measured".
"""

from __future__ import annotations

from typing import Any

from flexi.bench.selection import USE_CASES

MIB = 2**20
NOT_MEASURED = "not measured"


def _num(value: float | None, digits: int = 2, missing: str = NOT_MEASURED) -> str:
    return missing if value is None else f"{value:.{digits}f}"


def memory_cell(result: dict[str, Any], missing: str = NOT_MEASURED) -> str:
    memory = result["memory"]
    if not memory["bytes"]:
        return missing
    label = {"runner_rss": "runner RSS", "api_ps_estimate": "estimate, /api/ps",
             "planner": "planned, 1 user at 4k"}.get(memory["source"], memory["source"] or "")
    return f"{memory['bytes'] / MIB:.0f} MiB ({label})"


def cells(result: dict[str, Any], missing: str = NOT_MEASURED, unknown: str = "unknown") -> dict[str, str]:
    """Display strings of one model (table and Markdown share them)."""
    speed, family = result["speed"], result["family"]
    energy = result["energy"]["j_per_1k_output_tokens"]
    throughput = (f"{speed['tg_total_tokens_per_s_n']:.1f} ({speed['streams_n']} streams)"
                  if speed["tg_total_tokens_per_s_n"] is not None else missing)
    return {
        "model": result["model"] + ("" if result["installed"] else " (not installed)"),
        "family": f"{family['name']}, {family['licence_id']}" if family else unknown,
        "quality": _num(result["quality"]["average"], missing=missing),
        "german": _num(result["quality"]["average_de"], missing=missing),
        "speed": _num(speed["tg_tokens_per_s"], 1, f"failed: {speed['error']}" if speed["error"] else missing),
        "throughput": throughput,
        "memory": memory_cell(result, missing),
        "energy": f"{energy:.1f} J" if energy is not None else missing,
        "safety": _num(result["safety"]["pass_rate"], missing=missing),
        "openness": (f"{family['openness_score']} open" + (f", {family['unknown_count']} unknown"
                                                           if family["unknown_count"] else "")) if family else unknown,
        "context": str(result["context_length"]) if result["context_length"] else unknown,
        "pareto": ("yes (incomplete)" if result["pareto_incomplete"] else "yes") if result["pareto"] else "",
    }


COLUMNS = ("model", "family", "quality", "german", "speed", "throughput", "memory", "energy", "safety", "openness",
           "context", "pareto")
HEADINGS = ("Model", "Family, licence", "Quality (eval average)", "German (eval average_de)", "Gen tok/s (1 stream)",
            "Gen tok/s (all streams)", "Memory", "Energy / 1,000 output tokens", "Safety pass rate", "Openness",
            "Context", "Pareto front")
CASE_NAMES = {"chat": "Chat", "course_assistant": "Course assistant with documents",
              "essay_feedback": "Feedback on essays", "coding": "Coding"}


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown(doc: dict[str, Any], chart: str | None = "pareto.svg") -> str:
    params = doc["parameters"]
    budget = f"{params['budget_bytes'] / 2**30:.1f} GiB ({params['budget']})" if params["budget_bytes"] else "none"
    lines = [
        "# Flexi model selection",
        "",
        (f"Generated {doc['finished_at']} by `{doc['tool']}` from {len(params['inputs'])} report(s); memory budget "
         f"{budget}, {params['users']} concurrent user(s) per use case."),
        "",
        "Inputs:",
        "",
    ]
    lines += [f"- `{i['source']}` ({i['tool']}, finished {i['finished_at']})" for i in params["inputs"]]
    lines += ["", "## Models", "", "| " + " | ".join(HEADINGS) + " |", "|---|---|" + "---:|" * (len(HEADINGS) - 2)]
    for result in doc["results"]:
        row = cells(result)
        lines.append("| " + " | ".join(_md(row[c]) for c in COLUMNS) + " |")
    reasons = sorted({r["energy"]["reason"] for r in doc["results"] if r["energy"]["reason"]})
    if reasons:
        lines += ["", "Energy not measured: " + "; ".join(reasons) + "."]
    dims = ", ".join(params["pareto_dimensions"]) or "none"
    lines += [
        "", "## Pareto front", "",
        (f"On the front: {', '.join(doc['pareto']) or 'none'} (over {dims}; a model is dominated only by one that "
         "is measured on all of these, at least as good on each and better on one; a missing value never counts "
         "as better or worse, so a model with missing dimensions stays on the front, marked incomplete)."),
    ]
    if chart:
        lines += ["", f"![Quality against generation speed, point area = memory, Pareto front highlighted]({chart})"]
    lines += ["", "## Recommendations", ""]
    for case_id, rec in doc["recommendations"].items():
        title = CASE_NAMES.get(case_id, case_id)
        head = (f"**{rec['model']}** (score {rec['score']:.2f}" + (f", runner-up {rec['runner_up']})" if rec["runner_up"]
                                                                    else ")") if rec["model"] else "no recommendation")
        lines += [f"### {title} ({rec['ctx']} tokens of context)", "", head, "", rec["reason"]["en"], "",
                  f"*Deutsch:* {rec['reason']['de']}", ""]
        if rec["excluded"]:
            lines += ["Excluded:", ""] + [f"- {e['reason']['en']}" for e in rec["excluded"]] + [""]
    lines += ["## How the scores are computed", "",
              "| Use case | Context | Weights |", "|---|---:|---|"]
    for case in USE_CASES:
        if case.id in params["use_cases"]:
            weights = ", ".join(f"{k} {v:.2f}" for k, v in case.weights.items())
            lines.append(f"| {CASE_NAMES.get(case.id, case.id)} | {case.ctx} | {weights} |")
    lines += [
        "",
        ("Every criterion is 0–1: quality = eval average; German = eval average_de, or (when no German eval "
         "exists) 1/0 for German named in the catalogue; coding = mean of coding tasks (names with code, "
         "humaneval, mbpp); safety = pass rate over all probes; speed = single-stream generation tokens/s "
         "relative to the fastest candidate; context = context length / 32k (at most 1); openness = open "
         "dimensions / 13 (European Open Source AI Index, Liesenfeld & Dingemanse). A criterion no model was "
         "measured on is left out (the other weights scale up); a model missing a value others have scores 0 "
         "there. A use case needs at least one measured criterion. A model is excluded when its context is "
         "shorter than the use case's or when the memory planner (the server's admission formula) says its "
         "runner for that context and the given users does not fit the budget."),
        "",
    ]
    return "\n".join(lines)
