"""`flexi usage` and `flexi privacy …` on a fresh FLEXI_HOME, in-process."""

from __future__ import annotations

import json
from pathlib import Path

from flexi.db.engine import make_engine, session_factory
from flexi.db.models import UsageRecord
from flexi.db.pseudonym import load_key, pseudonymize
from tests.cli.test_admin import js, run


def test_usage_export_erase_purge_report(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "users", "add", "carol", "--role", "student")[0] == 0
    engine = make_engine(None, home)
    with session_factory(engine)() as s:
        s.add(UsageRecord(user_pseudonym=pseudonymize("carol", load_key(home)), model="smollm2:135m",
                          endpoint="/api/chat", prompt_tokens=7, completion_tokens=3))
        s.commit()
    engine.dispose()
    rows = js(home, "usage", "--by", "model")
    assert rows == [{"model": "smollm2:135m", "requests": 1, "prompt_tokens": 7, "completion_tokens": 3, "ok": 1,
                     "rejected": 0, "cancelled": 0, "errors": 0, "mean_queue_ms": 0, "mean_generation_ms": 0}]
    assert run(home, "usage", "--by", "planet")[0] == 1
    assert run(home, "usage", "--since", "yesterday")[0] == 1
    out_file = tmp_path / "carol.json"
    code, out, err = run(home, "privacy", "export", "carol", "-o", str(out_file))
    assert code == 0, err
    data = json.loads(out_file.read_text())
    assert data["profile"]["subject"] == "carol" and data["usage_records"][0]["prompt_tokens"] == 7
    code, _out, err = run(home, "privacy", "erase", "carol")
    assert code == 1 and "--yes" in err
    code, out, err = run(home, "privacy", "erase", "carol", "--yes")
    assert code == 0 and "usage_records_unlinked 1" in out
    assert run(home, "privacy", "export", "carol")[0] == 1  # gone
    assert js(home, "usage", "--by", "day")[0]["requests"] == 1  # the totals stay
    code, out, _ = run(home, "privacy", "purge")
    assert code == 0 and "usage_records 0" in out
    code, out, _ = run(home, "privacy", "report")
    assert code == 0 and "Art. 30" in out
