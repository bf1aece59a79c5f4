"""The read pool must open the same SQLite file as the writer (a custom FLEXI_DATABASE_URL once
made reads hit an unmigrated $FLEXI_HOME/flexi.db: "no such table: model_policies")."""

from __future__ import annotations

from pathlib import Path

from flexi.access.service import AccessService
from flexi.config import Settings


def test_reads_use_the_configured_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "state.db"
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{db}")
    service = AccessService.open(settings)
    try:
        assert service.authn.engine.url.database == str(db)
        assert service.policies.rules() == []  # would raise "no such table" on the wrong file
        assert not (tmp_path / "home" / "flexi.db").exists()
    finally:
        service.authn.engine.dispose()
        service.engine.dispose()
