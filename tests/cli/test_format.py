"""Human-readable sizes, numbers, times and durations, as Ollama prints them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flexi.cli.format import (
    WordWrapper,
    go_duration,
    human_bytes,
    human_duration,
    human_number,
    human_time,
    parse_time,
    processor_text,
    short_digest,
    stats_lines,
    until_text,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("size,text", [
    (0, "0 B"), (512, "512 B"), (1000, "1 KB"), (1500, "1.5 KB"), (98_000_000, "98 MB"),
    (98_765_432, "98 MB"), (4_700_000_000, "4.7 GB"), (2_000_000_000, "2 GB"), (123_456_789_012, "123 GB"),
    (1_200_000_000_000, "1.2 TB"),
])
def test_human_bytes(size, text):
    assert human_bytes(size) == text


@pytest.mark.parametrize("n,text", [
    (999, "999"), (512_000, "512K"), (134_515_008, "134.52M"), (7_000_000, "7M"),
    (8_030_000_000, "8.0B"), (7_000_000_000, "7B"), (7_240_000_000, "7.2B"),
])
def test_human_number(n, text):
    assert human_number(n) == text


@pytest.mark.parametrize("seconds,text", [
    (0.3, "Less than a second"), (1, "1 second"), (42, "42 seconds"), (61, "About a minute"),
    (125, "2 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
    (21 * 86400, "3 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_human_time_past_future_forever_and_zero():
    assert human_time(NOW - timedelta(minutes=2, seconds=3), now=NOW) == "2 minutes ago"
    assert human_time(NOW + timedelta(minutes=4, seconds=30), now=NOW) == "4 minutes from now"
    assert human_time(NOW + timedelta(days=365 * 100), now=NOW) == "Forever"
    assert human_time("0001-01-01T00:00:00Z", "Never", now=NOW) == "Never"
    assert human_time(None, "Never") == "Never"
    iso = (NOW - timedelta(hours=3)).isoformat().replace("+00:00", ".123456789+00:00")
    assert human_time(iso, now=NOW) == "3 hours ago"


def test_parse_time_accepts_go_timestamps():
    parsed = parse_time("2025-03-01T13:00:00.123456789+01:00")
    assert parsed == NOW.replace(microsecond=123456)
    assert parse_time("garbage") is None


def test_until_text():
    assert until_text((NOW + timedelta(minutes=4, seconds=59)).isoformat(), now=NOW) == "4 minutes from now"
    assert until_text((NOW - timedelta(seconds=1)).isoformat(), now=NOW) == "Stopping..."
    assert until_text((NOW + timedelta(days=365 * 250)).isoformat(), now=NOW) == "Forever"


@pytest.mark.parametrize("size,vram,text", [
    (100, 0, "100% CPU"), (100, 100, "100% GPU"), (100, 25, "75%/25% CPU/GPU"), (100, 200, "Unknown"),
])
def test_processor_text(size, vram, text):
    assert processor_text(size, vram) == text


def test_short_digest():
    assert short_digest("sha256:2af3b81862c6be03c769683af18efdadb2c33f60ff32ab6f83e42c043d6c7816") == "2af3b81862c6"
    assert short_digest("2af3b81862c6be03") == "2af3b81862c6"
    assert short_digest(None) == ""


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (850, "850ns"), (2_100, "2.1µs"), (2_100_000, "2.1ms"), (83_123_456, "83.123456ms"),
    (1_500_000_000, "1.5s"), (62_500_000_000, "1m2.5s"), (3_723_000_000_000, "1h2m3s"),
])
def test_go_duration(ns, text):
    assert go_duration(ns) == text


def test_stats_lines_rates_from_nanoseconds():
    lines = stats_lines({"total_duration": 2_000_000_000, "prompt_eval_count": 26, "prompt_eval_duration": 130_000_000,
                         "eval_count": 290, "eval_duration": 1_000_000_000})
    assert lines == [
        "total duration:       2s",
        "prompt eval count:    26 token(s)",
        "prompt eval duration: 130ms",
        "prompt eval rate:     200.00 tokens/s",
        "eval count:           290 token(s)",
        "eval duration:        1s",
        "eval rate:            290.00 tokens/s",
    ]
    assert stats_lines({}) == []


def _wrap(chunks, width):
    out: list[str] = []
    wrapper = WordWrapper(out.append, width)
    for chunk in chunks:
        wrapper.feed(chunk)
    wrapper.finish()
    return "".join(out)


def test_word_wrapper_breaks_between_words():
    text = _wrap(["The qu", "ick brown fox ", "jumps over the lazy dog"], 15)
    lines = text.split("\n")
    assert all(len(line.rstrip()) <= 15 for line in lines)
    assert " ".join(line.strip() for line in lines) == "The quick brown fox jumps over the lazy dog"


def test_word_wrapper_keeps_newlines_and_indentation():
    assert _wrap(["a\n    b"], 40) == "a\n    b"
    long_word = "x" * 30
    assert _wrap([f"hi {long_word}"], 12) == f"hi \n{long_word}"
