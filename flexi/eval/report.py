"""eval.md and the terminal table of `flexi eval`: pure functions of the document written to eval.json.

Laid out like the FLEXI paper's Table 4: one row per model, one column per task (score 0..1, higher is
better), the average, the German average and tokens/s measured in the same run. eval.md stays in English
(like bench.md) so reports from different machines compare; the terminal headings come from flexi/i18n.
"""

from __future__ import annotations

from typing import Any

from flexi.bench.bench_report import _machine_line, _md_cell


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def task_names(doc: dict[str, Any]) -> list[str]:
    return list(doc["parameters"]["tasks"])


def rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One flat row of display strings per model: task scores, averages, tokens/s, failed tasks."""
    out = []
    for result in doc["results"]:
        row = {"model": result["model"]}
        for task in task_names(doc):
            score = result["scores"].get(task)
            row[task] = "error" if task in result.get("errors", {}) else _num(score["score"] if score else None)
        row.update(average=_num(result.get("average")), average_de=_num(result.get("average_de")),
                   tokens_per_s=_num(result.get("tokens_per_s"), 1),
                   errors=str(len(result.get("errors") or {})))
        out.append(row)
    return out


def _task_line(doc: dict[str, Any], task: str) -> str:
    kind = doc["parameters"].get("task_kinds", {}).get(task, "?")
    lang = doc["parameters"].get("task_languages", {}).get(task, "?")
    details = {s["metric"]: s["n"] for r in doc["results"] for t, s in r["scores"].items() if t == task}
    metric = ", ".join(f"{m}, n = {n}" for m, n in details.items()) or "not scored"
    how = "log-likelihood of each choice (/v1/completions)" if kind == "loglikelihood" else "generated answer (/v1/chat/completions)"
    return f"- `{task}` ({lang}): {metric}; {how}."


def markdown(doc: dict[str, Any]) -> str:
    """eval.md: what was run where, the Table-4-style table, the tasks, and failed tasks with their reasons."""
    params, versions = doc["parameters"], doc["versions"]
    tasks = task_names(doc)
    headings = ["Model", *tasks, "Average", "Average (de)", "tok/s", "Failed tasks"]
    columns = ["model", *tasks, "average", "average_de", "tokens_per_s", "errors"]
    limit = f"at most {params['limit']} items per task" if params.get("limit") else "all items of each task"
    if params.get("max_tokens"):
        limit += f", answers capped at {params['max_tokens']} tokens"
    if (params.get("concurrent") or 1) > 1:
        limit += f", {params['concurrent']} requests in flight"
    lines = [
        "# Flexi eval",
        "",
        f"Target `{doc['target']['url']}`; started {doc['started_at']}, finished {doc['finished_at']}; {limit}.  ",
        f"Machine: {_machine_line(doc['machine'])}.  ",
        (f"Versions: Flexi server {versions.get('flexi_server') or 'unknown'}, client {versions['flexi_client']}, "
         f"lm-evaluation-harness {versions.get('lm_eval') or 'unknown'}, llama.cpp (llama-cpp-python) "
         f"{versions.get('llama_cpp_python') or 'unknown'}."),
        "",
        "| " + " | ".join(_md_cell(h) for h in headings) + " |",
        "|---|" + "---:|" * (len(headings) - 1),
    ]
    for row in rows(doc):
        lines.append("| " + " | ".join(_md_cell(row[c]) for c in columns) + " |")
    lines += ["", ("Scores are normalised to 0–1, higher is better (accuracy or exact match); the averages are "
                   "the mean over the scored tasks (German: the tasks in German). tok/s = single-stream generation "
                   "speed measured in the same run (server counters, as flexi bench)."), "", "Tasks:", ""]
    lines += [_task_line(doc, task) for task in tasks]
    failures = [(r["model"], task, message) for r in doc["results"] for task, message in (r.get("errors") or {}).items()]
    if failures:
        lines += ["", "Failed tasks:", ""]
        lines += [f"- {model}, `{task}`: {_md_cell(message)}" for model, task, message in failures]
    lines.append("")
    return "\n".join(lines)
