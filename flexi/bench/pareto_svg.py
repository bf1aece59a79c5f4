"""pareto.svg of `flexi recommend`: quality against generation speed, point area = memory, the Pareto front
highlighted. Written as plain SVG text (no plotting library): one <circle> per plotted model.

Accessible: the document has a <title> and a <desc> that states every model's values in words, so a screen
reader gets the same facts as the picture; the front is told apart by fill and ring, not by colour alone.
A model without a quality score is drawn in a band below the axis ("quality not measured"), one without a
speed in a column right of the plot; a model with neither is only named in the description. Texts are in
English like the other report files, so runs from different machines compare.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 940, 540
LEFT, RIGHT, TOP, BOTTOM = 80, 600, 60, 400  # plot area (x from LEFT to RIGHT, y from TOP to BOTTOM)
NO_QUALITY_Y = BOTTOM + 75
NO_SPEED_X = RIGHT + 40
R_MIN, R_MAX = 5.0, 24.0
MIB = 2**20
INK, GREY, MUTED = "#1a1a1a", "#333333", "#555555"
FRONT = 'fill="#d95f02" fill-opacity="0.85" stroke="#5a2500" stroke-width="2.5"'
DOMINATED = 'fill="#4a7fb5" fill-opacity="0.25" stroke="#1f3f5f" stroke-width="1.5"'


def _text(x: float, y: float, content: str, *, anchor: str = "start", fill: str = INK, size: int | None = None,
          bold: bool = False, extra: str = "") -> str:
    """One <text>, its content escaped."""
    attrs = f' text-anchor="{anchor}"' if anchor != "start" else ""
    attrs += f' font-size="{size}"' if size else ""
    attrs += ' font-weight="bold"' if bold else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}"{attrs}{extra}>{escape(content)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="4 4"' if dashed else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{dash}/>'


def _nice_max(value: float) -> float:
    """The next 1, 2, 2.5, 4, 5, 6 or 8 × 10^k at or above value (axis end, five even steps)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 4, 5, 6, 8, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


def _point(result: dict[str, Any]) -> tuple[float | None, float | None, int | None]:
    return (result["quality"]["average"], result["speed"]["tg_tokens_per_s"], result["memory"]["bytes"])


def description(doc: dict[str, Any]) -> str:
    """The chart in words, one sentence per model."""
    parts = []
    for r in doc["results"]:
        quality, speed, memory = _point(r)
        q = f"quality {quality:.2f}" if quality is not None else "quality not measured"
        s = f"{speed:.1f} generated tokens/s" if speed is not None else "speed not measured"
        m = f"memory {memory / MIB:.0f} MiB" if memory else "memory unknown"
        front = ", on the Pareto front" if r["pareto"] else ""
        parts.append(f"{r['model']}: {q}, {s}, {m}{front}.")
    dims = ", ".join(doc["parameters"]["pareto_dimensions"]) or "none"
    return (f"Quality (eval average, 0 to 1) against single-stream generation speed; point area is memory. "
            f"Pareto front over the measured dimensions ({dims}). " + " ".join(parts))


def render(doc: dict[str, Any]) -> str:
    """The SVG document for a selection report (`selection.build_selection`)."""
    plotted = [r for r in doc["results"] if _point(r)[0] is not None or _point(r)[1] is not None]
    speeds = [s for r in plotted if (s := _point(r)[1]) is not None]
    x_max = _nice_max(max(speeds) * 1.1) if speeds else 1.0
    memories = [m for r in plotted if (m := _point(r)[2])]
    m_max = max(memories) if memories else 1

    def x_of(speed: float | None) -> float:
        return NO_SPEED_X if speed is None else LEFT + (RIGHT - LEFT) * speed / x_max

    def y_of(quality: float | None) -> float:
        return NO_QUALITY_Y if quality is None else BOTTOM - (BOTTOM - TOP) * max(0.0, min(1.0, quality))

    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
         'role="img" aria-labelledby="pareto-title pareto-desc" font-family="sans-serif" font-size="13">'),
        '<title id="pareto-title">Model selection: quality against generation speed (point area = memory)</title>',
        f'<desc id="pareto-desc">{escape(description(doc))}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        _text(LEFT, 28, "Quality × speed × memory", size=16, bold=True),
    ]
    # axes and grid
    for i in range(5):
        y = y_of(i / 4)
        out += [_line(LEFT, y, RIGHT, y, "#dddddd"), _text(LEFT - 8, y + 4, f"{i / 4:.2f}", anchor="end", fill=GREY)]
    for i in range(6):
        x = x_of(x_max * i / 5)
        out += [_line(x, TOP, x, BOTTOM, "#eeeeee"),
                _text(x, BOTTOM + 18, _num(x_max * i / 5), anchor="middle", fill=GREY)]
    mid = (TOP + BOTTOM) / 2
    out += [
        _line(LEFT, BOTTOM, RIGHT, BOTTOM, GREY), _line(LEFT, TOP, LEFT, BOTTOM, GREY),
        _text((LEFT + RIGHT) / 2, BOTTOM + 40, "generation tokens/s (one stream)", anchor="middle"),
        _text(22, mid, "quality (eval average, 0–1)", anchor="middle", extra=f' transform="rotate(-90 22 {mid:.0f})"'),
    ]
    if any(_point(r)[0] is None for r in plotted):
        out.append(_line(LEFT, NO_QUALITY_Y, RIGHT, NO_QUALITY_Y, "#999999", dashed=True))
        out += [_text(LEFT - 8, NO_QUALITY_Y - 12 + 15 * i, word, anchor="end", fill=MUTED, size=12)
                for i, word in enumerate(("quality", "not", "measured"))]
    if any(_point(r)[1] is None for r in plotted):
        out += [_line(NO_SPEED_X, TOP, NO_SPEED_X, BOTTOM, "#999999", dashed=True),
                _text(NO_SPEED_X, TOP - 8, "speed not measured", anchor="middle", fill=MUTED, size=12)]
    # points, larger first so small ones stay visible on top
    labels: list[tuple[float, float]] = []
    for r in sorted(plotted, key=lambda r: -(_point(r)[2] or 0)):
        quality, speed, memory = _point(r)
        cx, cy = x_of(speed), y_of(quality)
        radius = R_MIN + (R_MAX - R_MIN) * math.sqrt(memory / m_max) if memory else R_MIN
        dash = "" if memory else ' stroke-dasharray="3 2"'
        mem_text = f"{memory / MIB:.0f} MiB" if memory else "memory unknown"
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" {FRONT if r["pareto"] else DOMINATED}{dash}>'
                   f'<title>{escape(r["model"])}: {mem_text}</title></circle>')
        lx, ly = cx + radius + 5, cy + 4
        while any(abs(ly - y) < 15 and abs(lx - x) < 150 for x, y in labels):
            ly += 15  # keep labels of nearby points apart
        labels.append((lx, ly))
        out.append(_text(lx, ly, r["model"], bold=r["pareto"]))
    # legend (no circles, so every <circle> is a model)
    lx = RIGHT + 170
    largest = f"(largest: {m_max / MIB:.0f} MiB;" if memories else "(memory unknown;"
    out += [
        f'<rect x="{lx}" y="{TOP}" width="14" height="14" {FRONT}/>',
        _text(lx + 22, TOP + 12, "on the Pareto front"),
        f'<rect x="{lx}" y="{TOP + 24}" width="14" height="14" {DOMINATED}/>',
        _text(lx + 22, TOP + 36, "dominated"),
        _text(lx, TOP + 62, "point area = memory"),
        _text(lx, TOP + 80, largest),
        _text(lx, TOP + 98, "dashed ring: unknown)"),
        _text(lx, TOP + 124, "front over:", fill=MUTED, size=12),
    ]
    out += [_text(lx + 8, TOP + 140 + 15 * i, dim, fill=MUTED, size=12)
            for i, dim in enumerate(doc["parameters"]["pareto_dimensions"] or ["none"])]
    missing = [r["model"] for r in doc["results"] if r not in plotted]
    if missing:
        out.append(_text(LEFT, HEIGHT - 12, f"Not drawn (neither quality nor speed measured): {', '.join(missing)}",
                         fill=MUTED, size=12))
    out.append("</svg>")
    return "\n".join(out) + "\n"
