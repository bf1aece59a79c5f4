"""Statistics and result files of a load test: results.json, results.md, latency.png.

Everything here is a pure function of the run's document (the dict written to
results.json), so a report can be rebuilt from an old results.json.

Conventions, following the FLEXI paper's Appendix A ("300 ± 0" for requests that
hit the 300 s limit): latency mean ± sd is taken over successful *and* timed-out
requests, a timed-out request counting with the time it was given; requests that
failed otherwise (HTTP error, error in the stream, connection error) are left out
of the latency and counted as errors. sd is the sample standard deviation (n − 1),
0 for a single request. Percentiles interpolate linearly between closest ranks
(numpy's default). Throughput is the sum of output tokens over the summed wall
time of the batches (first start → last byte of each batch of concurrent requests).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flexi.bench.clients import OK, TIMEOUT

# --- statistics ---------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def sample_sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n − 1); 0.0 for one value, None for none."""
    if not values:
        return None
    if len(values) == 1:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0–100), linear interpolation between closest ranks; None if empty."""
    data = sorted(values)
    if not data:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {p}")
    pos = (len(data) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


# --- summary ------------------------------------------------------------------------------


def summarize(requests: Sequence[dict[str, Any]], batches: Sequence[dict[str, Any]],
              prompts: Sequence[str], levels: Sequence[int]) -> list[dict[str, Any]]:
    """One row per prompt and concurrency level, in prompt order then level order."""
    rows = []
    for pi, prompt in enumerate(prompts):
        for level in levels:
            group = [r for r in requests if r["prompt_index"] == pi and r["level"] == level]
            walls = [b["wall_s"] for b in batches if b["prompt_index"] == pi and b["level"] == level]
            timed = [r["latency_s"] for r in group if r["status"] in (OK, TIMEOUT)]
            ttfts = [r["ttft_s"] for r in group if r["ttft_s"] is not None]
            tokens = sum(r["output_tokens"] for r in group)
            wall = sum(walls)
            timeouts = sum(1 for r in group if r["status"] == TIMEOUT)
            ok = sum(1 for r in group if r["status"] == OK)
            statuses: dict[str, int] = {}
            for r in group:
                if r["status"] not in (OK, TIMEOUT):
                    key = f"{r['status']} {r['http_status']}" if r.get("http_status") and r["status"] == "http_error" else r["status"]
                    statuses[key] = statuses.get(key, 0) + 1
            rows.append({
                "prompt_index": pi,
                "prompt": prompt,
                "level": level,
                "n": len(group),
                "ok": ok,
                "errors": len(group) - ok - timeouts,
                "timeouts": timeouts,
                "error_kinds": statuses,
                "latency_mean_s": mean(timed),
                "latency_sd_s": sample_sd(timed),
                "latency_min_s": min(timed) if timed else None,
                "latency_max_s": max(timed) if timed else None,
                "ttft_p50_s": percentile(ttfts, 50),
                "ttft_p95_s": percentile(ttfts, 95),
                "output_tokens": tokens,
                "wall_s": wall,
                "tokens_per_s": tokens / wall if wall > 0 else None,
            })
    return rows


# --- machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5, check=False).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def machine_description() -> dict[str, Any]:
    """The machine that generated the load (which is the server's only for local targets)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    ram = _ram_bytes()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "ram_bytes": ram,
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


# --- files --------------------------------------------------------------------------------


def write_json(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def short_prompt(prompt: str, width: int = 80) -> str:
    text = re.sub(r"\s+", " ", prompt).strip()
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def latency_cell(row: dict[str, Any]) -> str:
    """'mean ± sd s', with failures noted: '12.34 ± 0.56 s (2 errors)'."""
    if row["latency_mean_s"] is None:
        text = "–"
    else:
        text = f"{row['latency_mean_s']:.2f} ± {row['latency_sd_s']:.2f} s"
    notes = []
    if row["timeouts"]:
        notes.append(f"{row['timeouts']} timeout" + ("s" if row["timeouts"] != 1 else ""))
    if row["errors"]:
        notes.append(f"{row['errors']} error" + ("s" if row["errors"] != 1 else ""))
    return text + (f" ({', '.join(notes)})" if notes else "")


def _target_line(doc: dict[str, Any]) -> str:
    target, params = doc["target"], doc["parameters"]
    return (f"Target `{target['url']}` ({params['api']} API, `{target['endpoint']}`), "
            f"model `{params['model']}`")


def markdown(doc: dict[str, Any]) -> str:
    """results.md: the paper's Appendix A layout (rows = prompts, columns = concurrent queries)."""
    params, machine = doc["parameters"], doc["machine"]
    levels: list[int] = params["levels"]
    prompts: list[str] = doc["prompts"]
    rows = {(r["prompt_index"], r["level"]): r for r in doc["summary"]}
    max_tokens = params["max_tokens"] if params["max_tokens"] is not None else "server default"
    temperature = params["temperature"] if params["temperature"] is not None else "server default"
    lines = [
        "# Load test",
        "",
        f"{_target_line(doc)}.  ",
        (f"Started {doc['started_at']}, finished {doc['finished_at']}; "
         f"{params['repetitions']} repetition(s), timeout {params['timeout_s']:g} s, "
         f"max tokens {max_tokens}, temperature {temperature}, ignore_eos {str(params['ignore_eos']).lower()}.  "),
        (f"Load generated on: {machine['cpu_model']}, {machine['cpu_cores']} cores, "
         f"{machine['ram_gib']} GiB RAM ({machine['os']})."),
        "",
        "## Time [s] (mean ± sd)",
        "",
        "| Prompt | " + " | ".join(f"{lv} CQ" for lv in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for pi, prompt in enumerate(prompts):
        cells = [latency_cell(rows[(pi, lv)]) for lv in levels]
        lines.append(f"| {_md_cell(short_prompt(prompt))} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Time to first token, throughput and errors",
        "",
        "| Prompt | CQ | n | TTFT p50 [s] | TTFT p95 [s] | Output tokens/s | Errors | Timeouts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pi, prompt in enumerate(prompts):
        for lv in levels:
            r = rows[(pi, lv)]
            lines.append(
                f"| {_md_cell(short_prompt(prompt, 48))} | {lv} | {r['n']} | {_num(r['ttft_p50_s'])} | "
                f"{_num(r['ttft_p95_s'])} | {_num(r['tokens_per_s'], 1)} | {r['errors']} | {r['timeouts']} |")
    lines += [
        "",
        ("CQ = concurrent queries. Timed-out requests count with their time limit in mean ± sd (as in the "
         "FLEXI paper's Appendix A); other failed requests are left out and counted as errors. "
         "Output tokens/s = all output tokens of a cell / summed wall time of its batches."),
        "",
    ]
    return "\n".join(lines)


def latency_chart(doc: dict[str, Any], path: Path) -> None:
    """latency.png: mean latency vs concurrency, one line per prompt, error bars = sd.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch).
    Raises ImportError when matplotlib is missing.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    levels: list[int] = doc["parameters"]["levels"]
    rows = {(r["prompt_index"], r["level"]): r for r in doc["summary"]}
    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for pi, prompt in enumerate(doc["prompts"]):
        xs, ys, errs = [], [], []
        for lv in levels:
            r = rows[(pi, lv)]
            if r["latency_mean_s"] is not None:
                xs.append(lv)
                ys.append(r["latency_mean_s"])
                errs.append(r["latency_sd_s"] or 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4, label=short_prompt(prompt, 50))
    if any(r["timeouts"] for r in doc["summary"]):
        ax.axhline(doc["parameters"]["timeout_s"], color="grey", linestyle=":", linewidth=1, label="timeout")
    ax.set_xticks(sorted(set(levels)))
    ax.set_xlabel("concurrent queries")
    ax.set_ylabel("latency [s] (mean ± sd)")
    ax.set_title(f"{doc['parameters']['model']} @ {doc['target']['url']} ({doc['parameters']['api']} API)",
                 fontsize=10)
    top = max([r["latency_mean_s"] + (r["latency_sd_s"] or 0) for r in doc["summary"]
               if r["latency_mean_s"] is not None] or [1.0])
    ax.set_ylim(0, max(top * 1.15, 1e-3))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no successful requests", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, format="png")
