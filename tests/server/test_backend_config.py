"""`[[backends]]` settings: clear startup errors for what cannot work, nothing configured = nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flexi.config import Settings

OK = {"name": "gpu1", "url": "http://gpu1.uni.example:8000/v1", "kind": "vllm", "models": ["llama3:8b"]}


def _error(**changes: object) -> str:
    with pytest.raises(ValidationError) as exc:
        Settings(backends=[{**OK, **changes}])
    return str(exc.value)


def test_defaults_have_no_backends() -> None:
    assert Settings().backends == []


def test_a_list_of_models_maps_each_name_to_itself_and_a_table_maps_names() -> None:
    s = Settings(backends=[OK, {**OK, "name": "gpu2", "models": {"campus-llama": "meta-llama/Llama-3-8B"}}])
    assert s.backends[0].models == {"llama3:8b": "llama3:8b"}
    assert s.backends[1].models == {"campus-llama": "meta-llama/Llama-3-8B"}
    assert s.backends[0].max_concurrency == 8 and s.backends[0].active


@pytest.mark.parametrize("url", ["ftp://gpu1/v1", "gpu1:8000", "http://", "http://user:pw@gpu1/v1", "http://gpu1/?x=1"])
def test_bad_urls_are_refused(url: str) -> None:
    assert "url" in _error(url=url)


def test_unknown_kind_and_empty_models_are_refused() -> None:
    assert "kind" in _error(kind="tgi")
    assert "at least one model" in _error(models=[])
    assert "extra" in _error(api_base="http://elsewhere").lower()  # a typo is an error, not a silent default


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="two backends are named 'GPU1'"):
        Settings(backends=[OK, {**OK, "name": "GPU1"}])


def test_external_backends_stay_off_until_enabled() -> None:
    assert "enabled = true" in _error(external=True)
    assert "enabled = true" in _error(external=True, enabled=False)
    assert Settings(backends=[{**OK, "external": True, "enabled": True}]).backends[0].active
    assert not Settings(backends=[{**OK, "enabled": False}]).backends[0].active


def test_api_key_is_never_printed() -> None:
    s = Settings(backends=[{**OK, "api_key": "sk-secret-123"}])
    assert "sk-secret-123" not in repr(s) and "sk-secret-123" not in str(s.backends)
    assert s.backends[0].api_key is not None and s.backends[0].api_key.get_secret_value() == "sk-secret-123"


def test_backends_come_from_config_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text('[[backends]]\nname = "b"\nurl = "http://127.0.0.1:9/"\nkind = "flexi"\n'
                                          'models = { "remote" = "smollm2:135m" }\n')
    monkeypatch.setenv("FLEXI_CONFIG", str(tmp_path / "config.toml"))
    backend = Settings().backends[0]
    assert (backend.name, backend.url, backend.kind, backend.models) == ("b", "http://127.0.0.1:9", "flexi",
                                                                         {"remote": "smollm2:135m"})


def test_backends_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXI_BACKENDS", '[{"name": "b", "url": "http://b:8000/v1", "kind": "llamacpp", "models": ["m"]}]')
    assert Settings().backends[0].kind == "llamacpp"
