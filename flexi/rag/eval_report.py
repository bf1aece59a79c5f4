"""The report of `flexi rag eval`: a Markdown table, the full results as JSON, and a bar chart (PNG).

The chart is drawn with matplotlib's Agg backend (no display needed), one group of bars per set and chunk
size, one bar per mode and model, so "hybrid vs. dense vs. lexical" is visible at a glance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flexi.rag.eval_run import ConfigResult

MARKDOWN = "rag-eval.md"
JSON = "rag-eval.json"
CHART = "rag-eval.png"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def markdown_table(rows: Sequence[ConfigResult]) -> str:
    """One line per configuration; answer columns only when answers were generated."""
    k = rows[0].k if rows else 5
    answers = any(r.answers for r in rows)
    head = ["set", "chunk tokens", "mode", "embedding model", "questions", "chunks", f"recall@{k}", "recall@1",
            f"MRR@{k}", "search ms (p50)"]
    if answers:
        head += ["answers", "citing", "citation accuracy", "groundedness"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.set, str(r.chunk_tokens), r.mode, r.embedding_model or "–", str(r.questions), str(r.chunks),
                 _pct(r.recall), _pct(r.recall_at_1), f"{r.mrr:.3f}", f"{r.search_ms_p50:.2f}"]
        if answers:
            cells += [str(r.answers) if r.mode == "hybrid" else "–", str(r.answers_citing) if r.answers else "–",
                      _pct(r.citation_accuracy), _pct(r.groundedness)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def misses(rows: Sequence[ConfigResult]) -> str:
    """Per configuration, the questions without a matching chunk in the top k (what to look at first)."""
    lines = []
    for r in rows:
        if r.set == "all":
            continue
        missed = [qid for qid, rank in r.ranks.items() if rank is None]
        label = f"{r.set}, {r.chunk_tokens} tokens, {r.mode}" + (f" ({r.embedding_model})" if r.embedding_model else "")
        lines.append(f"- {label}: {', '.join(missed) if missed else 'none'}")
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[ConfigResult], meta: dict[str, Any]) -> str:
    parts = ["# Flexi RAG evaluation", ""]
    for key, value in meta.items():
        parts.append(f"- {key}: {value}")
    parts += ["", markdown_table(rows), f"Questions not found in the top {rows[0].k if rows else 5}:", "", misses(rows)]
    return "\n".join(parts)


def chart(rows: Sequence[ConfigResult], path: Path) -> None:
    """Grouped bars of recall@k, one group per (set, chunk size), one bar per mode and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r.set, r.chunk_tokens) for r in rows))
    series = list(dict.fromkeys((r.mode, r.embedding_model) for r in rows))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) + 2), 4.2), dpi=110)
    for j, (mode, model) in enumerate(series):
        values = []
        for group in groups:
            match = [r.recall for r in rows if (r.set, r.chunk_tokens) == group and (r.mode, r.embedding_model) == (mode, model)]
            values.append(match[0] if match else 0.0)
        label = mode if model is None or sum(1 for m, _ in series if m == mode) == 1 else f"{mode} ({model})"
        bars = ax.bar([i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))], values, width, label=label)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), [f"{s}\n{c} tokens" for s, c in groups])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(f"recall@{rows[0].k}" if rows else "recall")
    ax.axhline(0.9, color="grey", linewidth=0.8, linestyle="--")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title("Flexi RAG evaluation: retrieval recall by configuration")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(out: Path, rows: Sequence[ConfigResult], meta: dict[str, Any]) -> dict[str, Path]:
    """Write the three files into `out` (created if missing); returns their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / MARKDOWN, "json": out / JSON, "chart": out / CHART}
    paths["markdown"].write_text(markdown(rows, meta), "utf-8")
    paths["json"].write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in rows]}, ensure_ascii=False,
                                        indent=1), "utf-8")
    chart(rows, paths["chart"])
    return paths
