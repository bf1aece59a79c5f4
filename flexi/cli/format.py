"""Human-readable sizes, counts, times and durations, formatted like Ollama's `format` package."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Callable

from rich.cells import cell_len

_SIZE_UNITS = ((1000**4, "TB"), (1000**3, "GB"), (1000**2, "MB"), (1000, "KB"))


def human_bytes(size: int | float) -> str:
    """Decimal units like Ollama: 98 MB, 4.7 GB, 512 B."""
    size = int(size or 0)
    for factor, unit in _SIZE_UNITS:
        if size >= factor:
            value = size / factor
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def human_number(n: int | float) -> str:
    """Parameter counts: 134.52M, 8B, 7.2B, 512K."""
    n = int(n or 0)
    if n >= 1_000_000_000:
        value = n / 1_000_000_000
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if n >= 1_000_000:
        value = n / 1_000_000
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


def human_duration(seconds: float) -> str:
    """"2 minutes", "About an hour", "3 days" (Ollama's humanDuration)."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API (nanoseconds allowed); None if missing or zero."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    if parsed.year <= 1:
        return None
    return parsed


def human_time(value: str | datetime | None, zero: str = "Never", now: datetime | None = None) -> str:
    """"2 minutes ago", "4 minutes from now", or "Forever" beyond 20 years."""
    when = parse_time(value) if isinstance(value, str) or value is None else value
    if when is None:
        return zero
    now = now or datetime.now(timezone.utc)
    delta = (now - when).total_seconds()
    if delta / 3600 / 24 / 365 < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def until_text(expires_at: str | None, now: datetime | None = None) -> str:
    """The UNTIL column of `ps`."""
    when = parse_time(expires_at)
    if when is None:
        return "Never"
    now = now or datetime.now(timezone.utc)
    if now > when:
        return "Stopping..."
    return human_time(when, "Never", now)


def processor_text(size: int, size_vram: int) -> str:
    """The PROCESSOR column of `ps`: 100% CPU, 100% GPU or a split."""
    size, size_vram = int(size or 0), int(size_vram or 0)
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def short_digest(digest: str | None) -> str:
    """First 12 hex digits of "sha256:<hex>" or "<hex>"."""
    text = (digest or "").removeprefix("sha256:")
    return text[:12]


def go_duration(nanoseconds: int | float) -> str:
    """Nanoseconds as Go's time.Duration.String(): 1.5s, 83.2ms, 2m3.5s."""
    ns = int(nanoseconds or 0)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{_trim(rest / 1_000_000_000)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def stats_lines(final: dict) -> list[str]:
    """Ollama's `--verbose` summary from a final (done) response's nanosecond fields."""
    lines: list[str] = []
    total, load = final.get("total_duration") or 0, final.get("load_duration") or 0
    p_count, p_dur = final.get("prompt_eval_count") or 0, final.get("prompt_eval_duration") or 0
    e_count, e_dur = final.get("eval_count") or 0, final.get("eval_duration") or 0
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if p_count > 0:
        lines.append(f"prompt eval count:    {p_count} token(s)")
    if p_dur > 0:
        lines.append(f"prompt eval duration: {go_duration(p_dur)}")
        lines.append(f"prompt eval rate:     {p_count / (p_dur / 1e9):.2f} tokens/s")
    if e_count > 0:
        lines.append(f"eval count:           {e_count} token(s)")
    if e_dur > 0:
        lines.append(f"eval duration:        {go_duration(e_dur)}")
        lines.append(f"eval rate:            {e_count / (e_dur / 1e9):.2f} tokens/s")
    return lines


class WordWrapper:
    """Writes streamed text, breaking lines between words before `width` columns.

    A word is held back until the whitespace after it arrives (or `finish()`), so
    it is never split across lines; words longer than a line are written as they are.
    """

    def __init__(self, write: Callable[[str], object], width: int) -> None:
        self._write = write
        self.width = max(width, 10)
        self.col = 0
        self.word = ""
        self._soft_break = False

    def feed(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                self._flush_word()
                self._write("\n")
                self.col, self._soft_break = 0, False
            elif ch.isspace():
                self._flush_word()
                if self.col >= self.width:
                    self._write("\n")
                    self.col, self._soft_break = 0, True
                elif not (self._soft_break and self.col == 0):
                    self._write(ch)
                    self.col += 1
            else:
                self.word += ch

    def finish(self) -> None:
        self._flush_word()

    def _flush_word(self) -> None:
        if not self.word:
            return
        width = cell_len(self.word)
        if self.col > 0 and self.col + width > self.width:
            self._write("\n")
            self.col = 0
        self._write(self.word)
        self.col += width
        self.word, self._soft_break = "", False
