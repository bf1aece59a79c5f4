"""`flexi show`: Ollama-like sections from an /api/show response."""

from __future__ import annotations

from typing import Any

from flexi.cli.format import human_number

FIELDS = ("modelfile", "parameters", "template", "system", "license")


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _short(value: Any, limit: int = 100) -> str:
    text = _number(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def model_rows(resp: dict[str, Any]) -> list[tuple[str, str]]:
    info = resp.get("model_info") or {}
    details = resp.get("details") or {}
    rows: list[tuple[str, str]] = []
    arch = info.get("general.architecture")
    if arch:
        rows.append(("architecture", str(arch)))
        count = info.get("general.parameter_count")
        rows.append(("parameters", human_number(count) if count else str(details.get("parameter_size", ""))))
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = info.get(f"{arch}.{key}")
            if value is not None:
                rows.append((label, _number(value)))
    else:
        rows.append(("architecture", str(details.get("family", ""))))
        rows.append(("parameters", str(details.get("parameter_size", ""))))
    rows.append(("quantization", str(details.get("quantization_level", ""))))
    return rows


def parameter_rows(parameters: str) -> list[tuple[str, str]]:
    rows = []
    for line in (parameters or "").splitlines():
        fields = line.split()
        if len(fields) > 1:
            rows.append((fields[0], " ".join(fields[1:])))
    return rows


def head(text: str, n: int = 2) -> list[tuple[str, ...]]:
    """The first n non-empty lines, then "..." if more follow."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    rows: list[tuple[str, ...]] = [(line,) for line in lines[:n]]
    if len(lines) > n:
        rows.append(("...",))
    return rows


def _section(title: str, rows: list[tuple[str, ...]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    out = [f"  {title}"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        out.append(("    " + "    ".join(cells)).rstrip())
    out.append("")
    return out


def render_show(resp: dict[str, Any], verbose: bool = False) -> str:
    lines = _section("Model", model_rows(resp))
    lines += _section("Capabilities", [(str(c),) for c in resp.get("capabilities") or []])
    lines += _section("Parameters", parameter_rows(resp.get("parameters", "")))
    if verbose and resp.get("model_info"):
        meta = sorted((str(k), _short(v)) for k, v in resp["model_info"].items())
        lines += _section("Metadata", meta)
    if resp.get("system"):
        lines += _section("System", head(resp["system"]))
    if resp.get("license"):
        lines += _section("License", head(resp["license"]))
    return "\n".join(lines)
