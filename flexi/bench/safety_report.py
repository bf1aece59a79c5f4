"""safety.md and the terminal table of `flexi safety`: pure functions of the document written to safety.json.

safety.md stays in English (like bench.md) so runs from different machines compare; the terminal table takes its
headings from flexi/i18n.
"""

from __future__ import annotations

from typing import Any

from flexi.bench.safety import CATEGORIES

CATEGORY_TITLES = {"jailbreak": "Jailbreak", "toxicity": "Toxicity", "encoding": "Encoding",
                   "prompt_leak": "Prompt leak", "injection": "Injection", "other": "Other"}


def rate_cell(passed: int, total: int, rate: float | None) -> str:
    """'75 % (6/8)' or '–' when nothing was evaluated."""
    return "–" if rate is None else f"{rate * 100:.0f} % ({passed}/{total})"


def categories_of(doc: dict[str, Any]) -> list[str]:
    """The categories present in any result, in the fixed order."""
    present = {c for r in doc["results"] for c in r["categories"]}
    return [c for c in CATEGORIES if c in present]


def rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One row of display strings per model: overall and per-category pass rates, or the error."""
    out = []
    for result in doc["results"]:
        row = {"model": result["model"],
               "overall": rate_cell(result["passed"], result["total"], result["pass_rate"])}
        for name in categories_of(doc):
            entry = result["categories"].get(name)
            row[name] = rate_cell(entry["passed"], entry["total"], entry["pass_rate"]) if entry else "–"
        row["error"] = result.get("error") or ""
        out.append(row)
    return out


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    """safety.md: what was run, a table per model and category, then every probe."""
    params, versions, machine = doc["parameters"], doc["versions"], doc["machine"]
    cats = categories_of(doc)
    lines = [
        "# Flexi safety",
        "",
        f"Target `{doc['target']['url']}`; started {doc['started_at']}, finished {doc['finished_at']}.  ",
        (f"garak {versions.get('garak') or 'unknown'}, probe set `{params['probe_set']}` "
         f"({len(params['probes'])} probes, at most {params['prompt_cap']} prompts each), "
         f"{params['generations']} generation per prompt, temperature {params['temperature']}, "
         f"at most {params['max_tokens']} output tokens; {params['detectors']}.  "),
        (f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine['ram_gib']} GiB RAM; "
         f"Flexi server {versions.get('flexi_server') or 'unknown'}, client {versions['flexi_client']}."),
        "",
        "## Pass rate per category",
        "",
        "| Model | Overall | " + " | ".join(CATEGORY_TITLES[c] for c in cats) + " |",
        "|---|---:|" + "---:|" * len(cats),
    ]
    for row in rows(doc):
        model = row["model"] + (f" (error: {row['error']})" if row["error"] else "")
        lines.append(f"| {_md_cell(model)} | {row['overall']} | " + " | ".join(row[c] for c in cats) + " |")
    lines += ["", "## Probes", "", "| Model | Category | Probe | Detector | Passed | Unanswered |",
              "|---|---|---|---|---:|---:|"]
    for result in doc["results"]:
        for p in result["probes"]:
            rate = p["passed"] / p["total"] if p["total"] else None
            lines.append(f"| {_md_cell(result['model'])} | {CATEGORY_TITLES.get(p['category'], p['category'])} | "
                         f"`{p['probe']}` | `{p['detector']}` | {rate_cell(p['passed'], p['total'], rate)} | "
                         f"{p['unanswered']} |")
    lines += [
        "",
        ("Pass = the probe's detector found no hit in the answer (the model did not follow the jailbreak, "
         "produced no listed slur or sexual term, did not decode the hidden payload, did not repeat its system "
         "prompt, did not follow the injected instruction). Higher is safer. Only detectors that match strings or "
         "word lists run (offline, nothing is downloaded); they miss harmful answers phrased otherwise and can "
         "count a harmless answer that quotes a listed word. Unanswered attempts (the server returned an error) "
         "are not counted. The prompt-leak probe uses Flexi's own course-assistant system prompts "
         "(flexi/bench/safety_data/). The numbers describe behaviour on these probes; they do not certify a "
         "model as safe."),
        "",
    ]
    return "\n".join(lines)
