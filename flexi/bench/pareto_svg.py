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
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="pareto-title pareto-desc" font-family="sans-serif" font-size="13">',
        '<title id="pareto-title">Model selection: quality against generation speed (point area = memory)</title>',
        f'<desc id="pareto-desc">{escape(description(doc))}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="28" font-size="16" font-weight="bold" fill="#1a1a1a">Quality × speed × memory</text>',
    ]
    # axes and grid
    for i in range(5):
        q = i / 4
        y = y_of(q)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{RIGHT}" y2="{y:.1f}" stroke="#dddddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#333333">{q:.2f}</text>')
    for i in range(6):
        v = x_max * i / 5
        x = x_of(v)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{BOTTOM}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x:.1f}" y="{BOTTOM + 18}" text-anchor="middle" fill="#333333">{_num(v)}</text>')
    out += [
        f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333333"/>',
        f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{BOTTOM + 40}" text-anchor="middle" fill="#1a1a1a">'
        'generation tokens/s (one stream)</text>',
        f'<text x="22" y="{(TOP + BOTTOM) / 2:.0f}" text-anchor="middle" fill="#1a1a1a" '
        f'transform="rotate(-90 22 {(TOP + BOTTOM) / 2:.0f})">quality (eval average, 0–1)</text>',
    ]
    if any(_point(r)[0] is None for r in plotted):
        out += [f'<line x1="{LEFT}" y1="{NO_QUALITY_Y}" x2="{RIGHT}" y2="{NO_QUALITY_Y}" stroke="#999999" '
                'stroke-dasharray="4 4"/>',
                f'<text x="{LEFT - 8}" y="{NO_QUALITY_Y - 12}" text-anchor="end" fill="#555555" font-size="12">quality'
                f'</text><text x="{LEFT - 8}" y="{NO_QUALITY_Y + 4}" text-anchor="end" fill="#555555" '
                f'font-size="12">not</text><text x="{LEFT - 8}" y="{NO_QUALITY_Y + 18}" text-anchor="end" '
                'fill="#555555" font-size="12">measured</text>']
    if any(_point(r)[1] is None for r in plotted):
        out += [f'<line x1="{NO_SPEED_X}" y1="{TOP}" x2="{NO_SPEED_X}" y2="{BOTTOM}" stroke="#999999" '
                'stroke-dasharray="4 4"/>',
                f'<text x="{NO_SPEED_X}" y="{TOP - 8}" text-anchor="middle" fill="#555555" font-size="12">'
                'speed not measured</text>']
    # points, larger first so small ones stay visible on top
    labels: list[tuple[float, float]] = []
    for r in sorted(plotted, key=lambda r: -(_point(r)[2] or 0)):
        quality, speed, memory = _point(r)
        cx, cy = x_of(speed), y_of(quality)
        radius = R_MIN + (R_MAX - R_MIN) * math.sqrt(memory / m_max) if memory else R_MIN
        style = ('fill="#d95f02" fill-opacity="0.85" stroke="#5a2500" stroke-width="2.5"' if r["pareto"]
                 else 'fill="#4a7fb5" fill-opacity="0.25" stroke="#1f3f5f" stroke-width="1.5"')
        dash = "" if memory else ' stroke-dasharray="3 2"'
        mem_text = f"{memory / MIB:.0f} MiB" if memory else "memory unknown"
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" {style}{dash}>'
                   f'<title>{escape(r["model"])}: {mem_text}</title></circle>')
        lx, ly = cx + radius + 5, cy + 4
        while any(abs(ly - y) < 15 and abs(lx - x) < 150 for x, y in labels):
            ly += 15
        labels.append((lx, ly))
        weight = ' font-weight="bold"' if r["pareto"] else ""
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" fill="#1a1a1a"{weight}>{escape(r["model"])}</text>')
    # legend (no circles, so every <circle> is a model)
    lx = RIGHT + 170
    out += [
        f'<rect x="{lx}" y="{TOP}" width="14" height="14" fill="#d95f02" fill-opacity="0.85" stroke="#5a2500" '
        'stroke-width="2.5"/>',
        f'<text x="{lx + 22}" y="{TOP + 12}" fill="#1a1a1a">on the Pareto front</text>',
        f'<rect x="{lx}" y="{TOP + 24}" width="14" height="14" fill="#4a7fb5" fill-opacity="0.25" stroke="#1f3f5f" '
        'stroke-width="1.5"/>',
        f'<text x="{lx + 22}" y="{TOP + 36}" fill="#1a1a1a">dominated</text>',
        f'<text x="{lx}" y="{TOP + 62}" fill="#1a1a1a">point area = memory</text>',
        f'<text x="{lx}" y="{TOP + 80}" fill="#1a1a1a">(largest: {m_max / MIB:.0f} MiB;</text>'
        if memories else f'<text x="{lx}" y="{TOP + 80}" fill="#1a1a1a">(memory unknown;</text>',
        f'<text x="{lx}" y="{TOP + 98}" fill="#1a1a1a">dashed ring: unknown)</text>',
    ]
    out.append(f'<text x="{lx}" y="{TOP + 124}" fill="#555555" font-size="12">front over:</text>')
    for i, dim in enumerate(doc["parameters"]["pareto_dimensions"] or ["none"]):
        out.append(f'<text x="{lx + 8}" y="{TOP + 140 + 15 * i}" fill="#555555" font-size="12">{escape(dim)}</text>')
    missing = [r["model"] for r in doc["results"] if r not in plotted]
    if missing:
        out.append(f'<text x="{LEFT}" y="{HEIGHT - 12}" fill="#555555" font-size="12">Not drawn (neither quality nor '
                   f'speed measured): {escape(", ".join(missing))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
