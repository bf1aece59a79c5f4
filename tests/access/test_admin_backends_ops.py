"""Admin-added remote backends in the database (SQLite and PostgreSQL): stored as `BackendConfig`s,
names unique ignoring case (also against config.toml's), config.toml's read-only, every change raising the
version counter replicas poll, and no view ever carrying the api_key."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from flexi.access import admin_ops as ops
from flexi.config import BackendConfig

SECRET = "sk-ops-secret-0815"


def _config(name: str = "gpu2", **fields: object) -> BackendConfig:
    return BackendConfig(**{"name": name, "url": "http://gpu2.uni.example:8000/v1", "kind": "vllm",
                            "models": {"llama3:8b": "meta-llama/Llama-3-8B"}, **fields})  # type: ignore[arg-type]


def test_add_list_delete_and_version(session: Session) -> None:
    assert ops.backends_version(session) == 0 and ops.stored_backends(session) == []
    ops.add_backend(session, _config(api_key=SECRET, max_concurrency=4), ["campus-gpu"])
    session.commit()
    assert ops.backends_version(session) == 1
    (stored,) = ops.stored_backends(session)
    assert stored == _config(api_key=SECRET, max_concurrency=4)  # the api_key too: the server sends it
    ops.add_backend(session, _config("cloud", external=True, enabled=True), [])
    assert ops.backends_version(session) == 2
    assert [c.name for c in ops.stored_backends(session)] == ["gpu2", "cloud"]
    ops.delete_backend(session, "GPU2", ["campus-gpu"])
    session.commit()
    assert [c.name for c in ops.stored_backends(session)] == ["cloud"] and ops.backends_version(session) == 3


@pytest.mark.parametrize("name", ["gpu2", "GPU2", "campus-gpu", "Campus-GPU"])
def test_names_are_unique_ignoring_case(session: Session, name: str) -> None:
    ops.add_backend(session, _config(), ["campus-gpu"])
    with pytest.raises(ops.AdminError) as exc:
        ops.add_backend(session, _config(name), ["campus-gpu"])
    assert exc.value.status == 409


def test_config_backends_are_read_only_and_missing_ones_404(session: Session) -> None:
    with pytest.raises(ops.AdminError) as exc:
        ops.delete_backend(session, "campus-gpu", ["campus-gpu"])
    assert exc.value.status == 409 and "configuration file" in exc.value.message
    with pytest.raises(ops.AdminError) as exc:
        ops.delete_backend(session, "nothing", ["campus-gpu"])
    assert exc.value.status == 404
    assert ops.backends_version(session) == 0


def test_views_never_carry_the_api_key() -> None:
    view = ops.backend_view(_config(api_key=SECRET), "admin")
    assert SECRET not in repr(view) and "api_key" not in view and view["api_key_set"] is True
    assert view["enabled"] is True and view["source"] == "admin" and view["models"] == {"llama3:8b": "meta-llama/Llama-3-8B"}
    assert ops.backend_view(_config(enabled=False), "config")["enabled"] is False
