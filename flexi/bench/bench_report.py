"""bench.md and the terminal table of `flexi bench`: pure functions of the document written to bench.json.

bench.md stays in English (like the load test's results.md) so runs from different machines compare; the
terminal table takes its headings from flexi/i18n. Energy is shown only when measured; otherwise the cell
says "not measurable", never an estimate.
"""

from __future__ import annotations

from typing import Any

MIB = 2**20


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def memory_cell(memory: dict[str, Any]) -> str:
    """'812 MiB (runner RSS)', '790 MiB (estimate, /api/ps)' or '–'."""
    if not memory.get("bytes"):
        return "–"
    label = "runner RSS" if memory.get("source") == "runner_rss" else "estimate, /api/ps"
    return f"{memory['bytes'] / MIB:.0f} MiB ({label})"


def energy_cell(energy: dict[str, Any], not_measurable: str = "not measurable") -> str:
    """'123.4 J (rapl)' per 1,000 output tokens when measured, else `not_measurable`."""
    if not energy.get("measured") or energy.get("j_per_1k_output_tokens") is None:
        return not_measurable
    return f"{energy['j_per_1k_output_tokens']:.1f} J ({', '.join(energy.get('sources') or [])})"


def rows(doc: dict[str, Any], not_measurable: str = "not measurable") -> list[dict[str, str]]:
    """One flat row of display strings per model and stream count (table and Markdown share it)."""
    out = []
    for result in doc["results"]:
        if not result["rows"]:
            out.append({"model": result["model"], "streams": "–", "pp": "–", "tg": "–", "tg_total": "–",
                        "ttft": "–", "memory": "–", "energy": "–",
                        "errors": result.get("warmup_error") or "failed"})
            continue
        for row in result["rows"]:
            out.append({
                "model": result["model"], "streams": str(row["streams"]),
                "pp": _num(row["pp_tokens_per_s"]), "tg": _num(row["tg_tokens_per_s"]),
                "tg_total": _num(row["tg_total_tokens_per_s"]),
                "ttft": _num(row["ttft_mean_s"] * 1000 if row["ttft_mean_s"] is not None else None, 0),
                "memory": memory_cell(result["memory"]), "energy": energy_cell(row["energy"], not_measurable),
                "errors": f"{row['errors']}/{row['n']}" if row["errors"] else "0",
            })
    return out


COLUMNS = ("model", "streams", "pp", "tg", "tg_total", "ttft", "memory", "energy", "errors")
MD_HEADINGS = ("Model", "Streams", "pp tok/s (per stream)", "tg tok/s (per stream)", "tg tok/s (all streams)",
               "TTFT [ms]", "Memory", "Energy / 1,000 output tokens", "Errors")


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _machine_line(machine: dict[str, Any]) -> str:
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU detected"
    line = (f"{machine['cpu_model']}, {machine['cpu_cores']} cores ({machine.get('cpu_cores_usable')} usable), "
            f"{machine['ram_gib']} GiB RAM, {gpus} ({machine['os']})")
    return line + (f"; {machine['note']}" if machine.get("note") else "")


def markdown(doc: dict[str, Any]) -> str:
    """bench.md: what was run where, one table row per model and stream count, and how to read it."""
    params, versions = doc["parameters"], doc["versions"]
    lines = [
        "# Flexi bench",
        "",
        f"Target `{doc['target']['url']}`; started {doc['started_at']}, finished {doc['finished_at']}.  ",
        (f"Prompt ≈ {params['prompt_tokens']} tokens, {params['output_tokens']} output tokens (end of sequence "
         f"ignored), streams {', '.join(map(str, params['streams']))}, {params['repeat']} repetition(s).  "),
        f"Machine: {_machine_line(doc['machine'])}.  ",
        (f"Versions: Flexi server {versions.get('flexi_server') or 'unknown'}, client {versions['flexi_client']}, "
         f"llama.cpp (llama-cpp-python) {versions.get('llama_cpp_python') or 'unknown'}."),
        "",
        "| " + " | ".join(MD_HEADINGS) + " |",
        "|---|" + "---:|" * (len(MD_HEADINGS) - 1),
    ]
    for row in rows(doc):
        lines.append("| " + " | ".join(_md_cell(row[c]) for c in COLUMNS) + " |")
    reasons = sorted({r["energy"].get("reason") for res in doc["results"] for r in res["rows"]
                      if not r["energy"].get("measured") and r["energy"].get("reason")})
    lines += [
        "",
        ("pp = prompt processing, tg = token generation, both from the server's own counters "
         "(prompt_eval_count/prompt_eval_duration, eval_count/eval_duration), mean over requests. "
         "tg (all streams) = all output tokens / wall time of the batches. TTFT = request sent → first text, "
         "mean. Memory = resident memory of the model's runner process(es) after the run when the server runs "
         "on this machine, else the server's own estimate from /api/ps. Energy = whole CPU package (RAPL) and "
         "GPU (NVML) energy during the stream count's batches, idle draw and other processes included."),
    ]
    if reasons:
        lines += ["", "Energy not measurable: " + "; ".join(reasons) + "."]
    lines.append("")
    return "\n".join(lines)
