"""Model aliases without a server: the rules of `set_alias`, config.toml's aliases, and replicas following
a change through the `config_versions["aliases"]` counter (two tables on one database, as two processes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from flexi.access import admin_ops as ops
from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import upgrade
from flexi.service.aliases import ModelAliasTable

MODELS = {"llama3.3:latest", "qwen:7b", "smollm2:135m"}


def exists(name: str) -> bool:
    return str(ops.alias_key(name)) in {str(ops.alias_key(m)) for m in MODELS}


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url, tmp_path)
    yield engine
    engine.dispose()


def add(engine: Engine, name: str, target: str, configured: dict[str, str] | None = None, replace: bool = False) -> None:
    with session_factory(engine)() as session:
        ops.set_alias(session, name, target, model_exists=exists, configured=configured or {}, replace=replace)
        session.commit()


def test_config_aliases_invalid_or_chained_are_left_out(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "flexi.aliases"):
        table = ModelAliasTable({"gpt-4o": "llama3.3", "bad name": "llama3.3", "gpt-4": "gpt-4o", "ok": "qwen:7b"}, engine)
    assert table.configured == {"gpt-4o": "llama3.3", "ok": "qwen:7b"}
    assert table.get("GPT-4o:latest").target == "llama3.3"  # type: ignore[union-attr]
    assert table.get("gpt-4") is None and table.get("not a name!") is None
    assert "bad name" in caplog.text and "chains are not allowed" in caplog.text


def test_a_replica_follows_within_one_poll(engine: Engine) -> None:
    async def run() -> None:
        here, there = ModelAliasTable({}, engine, interval=0.05), ModelAliasTable({}, engine, interval=0.05)
        await here.start()
        await there.start()
        try:
            add(engine, "gpt-4o", "llama3.3")
            await here.refresh()  # the process that made the change
            assert here.get("gpt-4o") is not None
            for _ in range(100):  # the other one within a poll
                if there.get("gpt-4o") is not None:
                    break
                await asyncio.sleep(0.02)
            assert there.get("gpt-4o").target == "llama3.3"  # type: ignore[union-attr]
            add(engine, "gpt-4o", "qwen:7b", replace=True)
            await asyncio.sleep(0.3)
            assert there.get("gpt-4o").target == "qwen:7b"  # type: ignore[union-attr]
            with session_factory(engine)() as session:
                ops.delete_alias(session, "gpt-4o", [])
                session.commit()
            await asyncio.sleep(0.3)
            assert there.get("gpt-4o") is None
            assert there.version == await asyncio.to_thread(there._version)  # caught up with the counter
        finally:
            await here.close()
            await there.close()

    asyncio.run(run())


def test_config_alias_wins_over_a_stored_one(engine: Engine) -> None:
    add(engine, "gpt-4o", "qwen:7b")
    table = ModelAliasTable({"gpt-4o": "llama3.3"}, engine)
    asyncio.run(table.refresh())
    assert table.get("gpt-4o").source == "config" and table.get("gpt-4o").target == "llama3.3"  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "target", "status", "key"), [
    ("llama3.3", "qwen:7b", 409, "alias_is_model"),
    ("gpt-4o", "gpt-5", 400, "alias_unknown_target"),
    ("gpt-4o", "gpt-4o:latest", 400, "alias_self"),
    ("cfg", "qwen:7b", 409, "alias_from_config"),
    ("gpt-4o", "cfg", 400, "alias_chain"),
    ("a/../b", "qwen:7b", 400, "alias_bad_name"),
])
def test_set_alias_refusals(engine: Engine, name: str, target: str, status: int, key: str) -> None:
    with pytest.raises(ops.AdminError) as info:
        add(engine, name, target, configured={"cfg": "qwen:7b"})
    assert info.value.status == status and info.value.key == key
    assert info.value.localized("de") != info.value.localized("en")


def test_no_chain_in_either_direction(engine: Engine) -> None:
    add(engine, "first", "qwen:7b")
    with pytest.raises(ops.AdminError, match="alias itself"):
        add(engine, "second", "first")  # onto an alias
    with pytest.raises(ops.AdminError, match="exists already"):
        add(engine, "first", "llama3.3")  # without replace
    with pytest.raises(ops.AdminError, match="points at") as chained, session_factory(engine)() as session:
        # a deleted model's name, now an alias's target
        ops.set_alias(session, "qwen:7b", "llama3.3", model_exists=lambda n: n != "qwen:7b", configured={})
    assert chained.value.key == "alias_chain"
    with pytest.raises(ops.AdminError, match="not found") as info, session_factory(engine)() as session:
        ops.delete_alias(session, "nothing", [])
    assert info.value.status == 404
