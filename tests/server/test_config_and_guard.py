"""Configuration precedence, duration parsing and the request guard's decisions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flexi.config import load_settings, split_host
from flexi.durations import DurationError, parse_duration
from flexi.server.guard import host_allowed, origin_allowed


@pytest.mark.parametrize("value,seconds", [
    ("5m", 300), ("1h30m", 5400), ("300", 300), (300, 300), ("0", 0), (0, 0), ("1.5s", 1.5), ("250ms", 0.25),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, "-1", "-1m", -5.0])
def test_negative_durations_mean_forever(value: object) -> None:
    assert parse_duration(value) == math.inf


@pytest.mark.parametrize("value", ["soon", "", "5 minutes", "m5", True, float("nan")])
def test_bad_durations(value: object) -> None:
    with pytest.raises(DurationError):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:11434", ("127.0.0.1", 11434)), (":8080", ("127.0.0.1", 8080)), ("0.0.0.0", ("0.0.0.0", 11434)),
    ("http://example.org:9000/", ("example.org", 9000)), ("[::1]:7000", ("::1", 7000)),
])
def test_split_host(text: str, expected: tuple[str, int]) -> None:
    assert split_host(text) == expected


def test_precedence_flags_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('keep_alive = "10m"\nmax_loaded_models = 7\nnum_parallel = 2\n')
    monkeypatch.setenv("FLEXI_CONFIG", str(cfg))
    monkeypatch.setenv("FLEXI_MAX_LOADED_MODELS", "5")
    s = load_settings(num_parallel=3)
    assert s.keep_alive == "10m" and s.keep_alive_seconds == 600  # from the file
    assert s.max_loaded_models == 5  # env beats file
    assert s.num_parallel == 3  # flag beats file


def test_invalid_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXI_KEEP_ALIVE", "sometimes")
    with pytest.raises(ValueError):
        load_settings()


def test_host_check_only_on_loopback() -> None:
    loop = load_settings(host="127.0.0.1:11434", allowed_hosts=["flexi.uni.example"])
    assert host_allowed("localhost:11434", loop)
    assert host_allowed("127.0.0.1", loop)
    assert host_allowed("[::1]:11434", loop)
    assert host_allowed("flexi.uni.example", loop)
    assert not host_allowed("attacker.example:11434", loop)
    assert not host_allowed("127.0.0.1.attacker.example", loop)
    public = load_settings(host="0.0.0.0:11434")
    assert host_allowed("attacker.example", public)


def test_origins() -> None:
    s = load_settings(origins=["https://moodle.uni.example", "https://*.uni.example"])
    assert origin_allowed("http://localhost:5173", s)
    assert origin_allowed("https://127.0.0.1", s)
    assert origin_allowed("https://moodle.uni.example", s)
    assert origin_allowed("https://chat.uni.example", s)
    assert not origin_allowed("https://evil.example", s)
    assert not origin_allowed("https://localhost.evil.example", s)
    assert not origin_allowed("null", s)


def test_whole_loopback_range_keeps_the_host_check() -> None:
    s = load_settings(host="127.0.0.2:11434")
    assert s.is_loopback and not host_allowed("attacker.example", s)
    assert not load_settings(host="10.1.2.3:11434").is_loopback


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXI_TRUSTED_PROXIES", "10.0.0.5, 192.168.0.0/16,2001:db8::/32")
    assert load_settings().trusted_proxies == ["10.0.0.5", "192.168.0.0/16", "2001:db8::/32"]
    monkeypatch.setenv("FLEXI_TRUSTED_PROXIES", "proxy.uni.example")
    with pytest.raises(ValueError, match="FLEXI_TRUSTED_PROXIES"):
        load_settings()
