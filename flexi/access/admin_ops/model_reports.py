"""Model reports: what `flexi bench|eval|safety|quant-report --save` measured, stored with the model.

Why in the database: every replica's model picker and catalogue show the same figures (teachers see a
model's safety-probe result before they choose it), and `flexi select` combines them without files. A
report is bound to the model file's digest: a model replaced under the same name starts without figures
(`latest_model_reports` leaves out reports of another digest). The summary shown in the UI is computed
here from the tool's result, in one place, so it cannot disagree with the stored report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session, defer

from flexi.access.admin_ops.checks import not_found, valid_id
from flexi.access.admin_ops.errors import AdminError
from flexi.db.models import ModelReport

KINDS = ("bench", "eval", "safety", "quant")
TOOL_KINDS = {"flexi bench": "bench", "flexi eval": "eval", "flexi safety": "safety", "flexi quant-report": "quant"}
MAX_REPORT_BYTES = 512 * 1024  # one model's result; a full eval or garak summary is a few KiB
KEEP_PER_MODEL_KIND = 20  # older reports of the same model and kind are dropped when a new one arrives


@dataclass(frozen=True)
class StoredReport:
    id: int
    model: str
    digest: str | None
    kind: str
    tool: str
    summary: dict[str, Any]
    report: dict[str, Any]
    created_at: datetime

    def view(self, full: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "model": self.model, "digest": self.digest, "kind": self.kind,
                               "tool": self.tool, "summary": self.summary, "created_at": self.created_at.isoformat()}
        if full:
            out["report"] = self.report
        return out


def _stored(row: ModelReport) -> StoredReport:
    return StoredReport(row.id, row.model, row.digest, row.kind, row.tool, dict(row.summary), dict(row.report),
                        row.created_at)


def _clean(value: Any, path: str = "report") -> Any:
    """The value with non-finite numbers as None; text PostgreSQL cannot store (NUL, lone surrogates) is refused."""
    if isinstance(value, str):
        if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise AdminError(f"{path} contains a NUL character or a lone surrogate", 400)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_clean(str(k), path): _clean(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**6 else None


def _short(value: Any) -> str | None:
    """A short label from a report (e.g. "Q4_K_M"): anything else is dropped, never passed on to every user."""
    return value[:32] if isinstance(value, str) else None


def _bench_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    raw = result.get("rows")
    rows = [r for r in (raw if isinstance(raw, list) else []) if isinstance(r, Mapping) and r.get("ok")
            and _count(r.get("streams")) is not None]
    single = next((r for r in rows if r.get("streams") == 1), None)
    widest = max(rows, key=lambda r: r["streams"], default=None)
    out: dict[str, Any] = {}
    if single is not None:
        out["tg_tokens_per_s"] = _number(single.get("tg_tokens_per_s"))
        out["pp_tokens_per_s"] = _number(single.get("pp_tokens_per_s"))
        out["ttft_s"] = _number(single.get("ttft_mean_s"))
    if widest is not None and widest is not single:
        out["streams"] = widest.get("streams")
        out["tg_total_tokens_per_s"] = _number(widest.get("tg_total_tokens_per_s"))
    memory = result.get("memory")
    if isinstance(memory, Mapping):
        out["memory_bytes"] = _number(memory.get("peak_bytes") or memory.get("bytes"))
    for row in rows:
        energy = row.get("energy")
        if isinstance(energy, Mapping) and energy.get("measured"):
            out["joules_per_1k_tokens"] = _number(energy.get("j_per_1k_tokens"))
            break
    return {k: v for k, v in out.items() if v is not None}


def _eval_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    scores = result.get("scores") or {}
    return {"average": _number(result.get("average")), "average_de": _number(result.get("average_de")),
            "tasks": len(scores) if isinstance(scores, Mapping) else 0,
            "tokens_per_s": _number(result.get("tokens_per_s"))}


def _safety_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    categories = result.get("categories") or {}
    return {"pass_rate": _number(result.get("pass_rate")),
            "categories": {str(name)[:32]: _number(c.get("pass_rate")) for name, c in list(categories.items())[:16]
                           if isinstance(c, Mapping)} if isinstance(categories, Mapping) else {}}


def _quant_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    perplexity = result.get("perplexity") or {}
    return {"quant": _short(result.get("quant")), "size_bytes": _number(result.get("size_bytes")),
            "perplexity": {str(k)[:8]: _number(v) for k, v in list(perplexity.items())[:8]}
            if isinstance(perplexity, Mapping) else {},
            "tg_tokens_per_s": _number(result.get("tg_tokens_per_s"))}


SUMMARIES = {"bench": _bench_summary, "eval": _eval_summary, "safety": _safety_summary, "quant": _quant_summary}


def kind_of_tool(tool: str) -> str:
    """The report kind of a tool name as the commands write it ("flexi eval" → "eval")."""
    kind = TOOL_KINDS.get(tool.strip())
    if kind is None:
        raise AdminError(f"unknown report tool {tool[:60]!r}; expected one of: {', '.join(TOOL_KINDS)}", 400)
    return kind


def summarize(kind: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The few figures the model picker and catalogue show, from one model's result of a tool."""
    if kind not in SUMMARIES:
        raise AdminError(f"unknown report kind {kind[:20]!r}; expected one of: {', '.join(KINDS)}", 400)
    return SUMMARIES[kind](result)


def save_model_report(session: Session, *, model: str, digest: str | None, tool: str, result: Mapping[str, Any],
                      context: Mapping[str, Any] | None = None, created_by: int | None = None) -> StoredReport:
    """Store one model's result of a measuring tool. `context` is the report's shared part (machine,
    versions, parameters, times), kept with the result so a stored report stands on its own."""
    kind = kind_of_tool(tool)
    report = _clean({**dict(context or {}), "tool": tool, "result": dict(result)})
    if len(json.dumps(report, ensure_ascii=False).encode()) > MAX_REPORT_BYTES:
        raise AdminError(f"the report is larger than {MAX_REPORT_BYTES // 1024} KiB", 413)
    row = ModelReport(model=model, digest=digest, kind=kind, tool=tool[:64], summary=_clean(summarize(kind, result)),
                      report=report, created_by=created_by)
    session.add(row)
    session.flush()
    old = select(ModelReport.id).where(ModelReport.model == model, ModelReport.kind == kind) \
        .order_by(ModelReport.id.desc()).offset(KEEP_PER_MODEL_KIND)
    session.execute(delete(ModelReport).where(ModelReport.id.in_(old.scalar_subquery())))
    return _stored(row)


def list_model_reports(session: Session, *, model: str | None = None, kind: str | None = None,
                       limit: int = 100) -> list[StoredReport]:
    """Stored reports, newest first, optionally of one model and kind."""
    query = select(ModelReport).order_by(ModelReport.id.desc()).limit(max(1, min(limit, 1000)))
    if model is not None:
        query = query.where(ModelReport.model == model)
    if kind is not None:
        query = query.where(ModelReport.kind == kind)
    return [_stored(row) for row in session.scalars(query)]


def latest_model_reports(session: Session, digests: Mapping[str, str | None],
                         with_report: bool = False) -> dict[str, dict[str, StoredReport]]:
    """The newest report of each kind for each model in `digests` (model → its current file digest, or None
    for a remote model), leaving out reports measured on another file under the same name."""
    if not digests:
        return {}
    current = or_(*(and_(ModelReport.model == model, ModelReport.digest == digest if digest is not None
                         else ModelReport.digest.is_(None)) for model, digest in digests.items()))
    newest = select(func.max(ModelReport.id)).where(current).group_by(ModelReport.model, ModelReport.kind)
    out: dict[str, dict[str, StoredReport]] = {}
    # the full report (up to 512 KiB each) stays in the database: the picker shows the summary only
    query = select(ModelReport).where(ModelReport.id.in_(newest.scalar_subquery()))
    if not with_report:
        query = query.options(defer(ModelReport.report))
    for row in session.scalars(query.order_by(ModelReport.id)):
        out.setdefault(row.model, {})[row.kind] = StoredReport(row.id, row.model, row.digest, row.kind, row.tool,
                                                               dict(row.summary), dict(row.report) if with_report else {},
                                                               row.created_at)
    return out


def get_model_report(session: Session, report_id: int) -> StoredReport:
    row = session.get(ModelReport, report_id) if valid_id(report_id) else None
    if row is None:
        raise not_found("model report", report_id)
    return _stored(row)


def delete_model_report(session: Session, report_id: int) -> None:
    row = session.get(ModelReport, report_id) if valid_id(report_id) else None
    if row is None:
        raise not_found("model report", report_id)
    session.delete(row)
    session.flush()

