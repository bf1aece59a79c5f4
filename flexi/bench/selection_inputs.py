"""The inputs of `flexi recommend`: measured reports and local facts, merged into one record per model.

Loading (files, the local model store) is kept apart from merging and scoring, so the same records can
later come from reports stored in the server's database: `merge()` is a pure function of parsed report
documents and installed-model facts, `load_report_files()` and `installed_models()` are the only parts
that touch the disk. A value nobody measured stays None ("not measured"), never a guess.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexi.catalog import Family, match_family
from flexi.store.gguf_meta import GGUFInfo
from flexi.store.names import parse_model_name

log = logging.getLogger(__name__)

BENCH, EVAL, SAFETY, QUANT = "flexi bench", "flexi eval", "flexi safety", "flexi quant-report"
MEASURING_TOOLS = (BENCH, EVAL, SAFETY)  # at least one of these must be present
KNOWN_TOOLS = (*MEASURING_TOOLS, QUANT)
NOT_INPUTS = ("flexi recommend", "flexi loadtest")  # skipped silently when a directory is scanned
CODING_MARKERS = ("code", "coding", "humaneval", "mbpp")  # eval task names that measure programming


@dataclass(frozen=True)
class Report:
    """One parsed report document and where it came from (a path, later a database row)."""

    doc: dict[str, Any]
    source: str

    @property
    def tool(self) -> str:
        return str(self.doc.get("tool"))

    @property
    def finished_at(self) -> str:
        return str(self.doc.get("finished_at") or self.doc.get("started_at") or "")


@dataclass(frozen=True)
class Installed:
    """An installed model as the memory planner and the catalogue see it."""

    name: str
    file_size: int
    info: GGUFInfo


@dataclass
class Candidate:
    """Everything known about one model; None means not measured (or, for catalogue facts, unknown)."""

    model: str
    installed: Installed | None = None
    family: Family | None = None
    context_length: int | None = None
    # flexi bench
    tg_tokens_per_s: float | None = None
    pp_tokens_per_s: float | None = None
    ttft_s: float | None = None
    speed_streams: int | None = None
    streams_n: int | None = None
    tg_total_tokens_per_s_n: float | None = None
    memory_bytes: int | None = None
    memory_source: str | None = None
    energy_j_per_1k: float | None = None
    energy_reason: str | None = None
    bench_error: str | None = None
    # flexi eval
    quality: float | None = None
    quality_de: float | None = None
    coding: float | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    # flexi safety
    safety: float | None = None
    safety_categories: dict[str, Any] = field(default_factory=dict)
    # flexi quant-report
    quants: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return any(v is not None for v in (self.tg_tokens_per_s, self.quality, self.safety, self.memory_bytes))


def model_key(name: str) -> str:
    """"SmolLM2:135M", "smollm2:135m" and "registry.ollama.ai/library/smollm2:135m" compare alike."""
    try:
        return parse_model_name(name).display.lower()
    except Exception:  # noqa: BLE001 - a report may name a model our parser refuses; keep it as written
        return name.strip().lower()


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bench(c: Candidate, result: dict[str, Any]) -> None:
    rows = [r for r in result.get("rows") or [] if isinstance(r, dict) and _num(r.get("streams"))]
    if not rows:
        c.bench_error = str(result.get("warmup_error") or "no successful measurement")
        return
    single = min(rows, key=lambda r: r["streams"])
    kinds = single.get("error_kinds") or []
    c.bench_error = str(kinds[0]) if not single.get("ok") and kinds else None
    c.speed_streams = int(single["streams"])
    c.tg_tokens_per_s, c.pp_tokens_per_s = _num(single.get("tg_tokens_per_s")), _num(single.get("pp_tokens_per_s"))
    c.ttft_s = _num(single.get("ttft_mean_s"))
    energy = single.get("energy") if isinstance(single.get("energy"), dict) else {}
    c.energy_j_per_1k = _num(energy.get("j_per_1k_output_tokens")) if energy.get("measured") else None
    c.energy_reason = None if c.energy_j_per_1k is not None else (energy.get("reason") or None)
    most = max(rows, key=lambda r: r["streams"])
    if most["streams"] > single["streams"]:
        c.streams_n, c.tg_total_tokens_per_s_n = int(most["streams"]), _num(most.get("tg_total_tokens_per_s"))
    memory = result.get("memory") if isinstance(result.get("memory"), dict) else {}
    if _num(memory.get("bytes")):
        c.memory_bytes, c.memory_source = int(memory["bytes"]), str(memory.get("source") or "unknown")


def _eval(c: Candidate, result: dict[str, Any]) -> None:
    scores = result.get("scores") if isinstance(result.get("scores"), dict) else {}
    c.scores = scores
    c.quality, c.quality_de = _num(result.get("average")), _num(result.get("average_de"))
    coding = [_num(s.get("score")) for task, s in scores.items()
              if isinstance(s, dict) and any(m in task.lower() for m in CODING_MARKERS)]
    coding_values = [v for v in coding if v is not None]
    c.coding = sum(coding_values) / len(coding_values) if coding_values else None
    if c.tg_tokens_per_s is None and _num(result.get("tokens_per_s")):
        c.tg_tokens_per_s, c.speed_streams = _num(result["tokens_per_s"]), 1


def _safety(c: Candidate, result: dict[str, Any]) -> None:
    c.safety = _num(result.get("pass_rate"))
    categories = result.get("categories")
    c.safety_categories = categories if isinstance(categories, dict) else {}


def _quant(c: Candidate, result: dict[str, Any]) -> None:
    c.quants.append({k: result.get(k) for k in ("quant", "size_bytes", "perplexity", "tg_tokens_per_s")})


APPLY = {BENCH: _bench, EVAL: _eval, SAFETY: _safety, QUANT: _quant}


def merge(reports: Iterable[Report], installed: Iterable[Installed] = ()) -> list[Candidate]:
    """One candidate per model named in a report (the newest report of each tool wins), plus the installed
    generation models nobody measured yet; catalogue and planner facts for the installed ones."""
    by_key: dict[str, Candidate] = {}
    local = {model_key(m.name): m for m in installed}
    for report in sorted((r for r in reports if r.tool in APPLY), key=lambda r: r.finished_at):
        for result in report.doc.get("results") or []:
            if not isinstance(result, dict) or not isinstance(result.get("model"), str):
                continue
            key = model_key(result["model"])
            candidate = by_key.setdefault(key, Candidate(model=result["model"]))
            APPLY[report.tool](candidate, result)
            candidate.sources.append({"tool": report.tool, "source": report.source, "finished_at": report.finished_at})
    for key, model in local.items():
        if key not in by_key and "embedding" not in model.info.capabilities:
            by_key[key] = Candidate(model=model.name)
    for key, candidate in by_key.items():
        model = local.get(key)
        if model is not None:
            candidate.installed = model
            match = match_family(model.info, model.name)
            candidate.family = match.family if match else None
        candidate.context_length = ((model.info.context_length if model else None)
                                    or (candidate.family.context_length if candidate.family else None))
    return sorted(by_key.values(), key=lambda c: model_key(c.model))


# --- loading (the disk) ---------------------------------------------------------------------------


@dataclass
class Loaded:
    reports: list[Report] = field(default_factory=list)
    problems: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (message key, values)


def _read(path: Path, expected: str | None, loaded: Loaded, scanned: bool) -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        loaded.problems.append(("select_unreadable", {"path": str(path), "detail": exc.strerror or str(exc)}))
        return
    except (UnicodeDecodeError, ValueError) as exc:
        if not scanned:
            loaded.problems.append(("select_bad_json", {"path": str(path), "detail": str(exc)}))
        return
    tool = doc.get("tool") if isinstance(doc, dict) else None
    if scanned and (tool is None or tool in NOT_INPUTS):
        return  # a directory may hold other JSON: configs, load tests, earlier selection reports
    if tool not in KNOWN_TOOLS:
        loaded.problems.append(("select_unknown_tool", {"path": str(path), "tool": tool, "known": ", ".join(KNOWN_TOOLS)}))
        return
    if expected is not None and tool != expected:
        loaded.problems.append(("select_wrong_tool", {"path": str(path), "tool": tool, "expected": expected}))
        return
    if not isinstance(doc.get("results"), list):
        loaded.problems.append(("select_no_results", {"path": str(path)}))
        return
    loaded.reports.append(Report(doc, str(path)))


def load_report_files(paths: Iterable[tuple[Path, str | None]]) -> Loaded:
    """Read (path, expected tool or None) pairs; a directory is scanned for *.json reports (recursively).
    Problems are collected for the caller to show, never raised: one bad file must not hide the rest."""
    loaded = Loaded()
    for path, expected in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*.json")):
                _read(file, expected, loaded, scanned=True)
        elif path.exists():
            _read(path, expected, loaded, scanned=False)
        else:
            loaded.problems.append(("select_missing", {"path": str(path)}))
    return loaded


def stored_reports(entries: Iterable[dict[str, Any]], server: str) -> list[Report]:
    """Reports stored with the models on a server (`GET /admin/model-reports?latest=true&full=true`), as the
    report documents the files hold: each stored entry is one model's result plus the run's context."""
    out = []
    for entry in entries:
        report = entry.get("report") if isinstance(entry, dict) else None
        if not isinstance(report, dict) or not isinstance(report.get("result"), dict):
            continue
        doc = {k: v for k, v in report.items() if k != "result"}
        doc["finished_at"] = doc.get("finished_at") or entry.get("created_at")
        out.append(Report({**doc, "results": [report["result"]]}, f"{server} (stored report {entry.get('id')})"))
    return out


def installed_models(models_dir: Path) -> list[Installed]:
    """The local store's models with their GGUF facts (external cloud models left out); an unreadable
    store means nothing installed, so reports still work without one."""
    from flexi.store.store import ModelStore

    try:
        records = ModelStore(models_dir).list()
    except Exception as exc:  # noqa: BLE001
        log.warning("cannot read the model store: %s", exc)
        return []
    out = []
    for record in records:
        if record.external:
            continue
        try:
            size = record.model_path.stat().st_size
        except OSError:
            continue
        out.append(Installed(record.name, size, record.info))
    return out
