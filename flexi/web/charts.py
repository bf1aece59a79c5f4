"""Usage charts as server-rendered SVG bar charts.

Server-side so the browser needs no chart library and the CSP stays strict; an
SVG loaded as an image cannot run script. Every label is XML-escaped (course
and model names are admin- or user-chosen text).
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 64
BAR = "#1f5fa8"  # 6.4:1 against white
AXIS = "#3d3d3d"


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _format(value: float, locale: str) -> str:
    text = f"{value:,.0f}"
    return text.replace(",", ".") if locale == "de" else text


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, locale: str = "en") -> str:
    """An accessible SVG bar chart (role=img, <title>, one <title> per bar with its exact value)."""
    n = len(values)
    top = _nice_ceiling(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-labelledby="t">',
             f'<title id="t">{escape(title)}</title>',
             '<g font-family="system-ui,sans-serif" font-size="11" fill="#222">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
             f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    for i in range(5):  # grid and y labels
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_format(top * i / 4, locale)}</text>')
    if n == 0:
        empty = "Keine Daten" if locale == "de" else "No data"
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">{empty}</text>')
    slot = plot_w / max(n, 1)
    bar_w = max(2.0, slot * 0.7)
    every = max(1, n // 12)  # at most ~12 x labels
    for i, (label, value) in enumerate(zip(labels, values)):
        h = plot_h * value / top
        x = LEFT + i * slot + (slot - bar_w) / 2
        parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{BAR}">'
                     f'<title>{escape(label)}: {_format(value, locale)}</title></rect>')
        if i % every == 0:
            short = label if len(label) <= 14 else label[:13] + "…"
            cx = LEFT + i * slot + slot / 2
            parts.append(f'<text x="{cx:.1f}" y="{TOP + plot_h + 14}" text-anchor="end" '
                         f'transform="rotate(-35 {cx:.1f} {TOP + plot_h + 14})">{escape(short)}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="{AXIS}"/>')
    parts.append("</g></svg>")
    return "".join(parts)
