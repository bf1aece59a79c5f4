"""`flexi users|keys|groups|courses|quotas|policies` on a fresh FLEXI_HOME (SQLite), in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexi.access.passwords import verify_password
from flexi.cli.main import app
from flexi.db.apikeys import verify_key
from flexi.db.engine import make_engine, session_factory
from flexi.db.models import User


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def run(home: Path, *args: str, stdin: str | None = None, lang: str = "C") -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"FLEXI_HOME": str(home), "FLEXI_DATABASE_URL": "", "FLEXI_CONFIG": str(home / "none.toml"), "LANG": lang,
           "LC_ALL": "", "LC_MESSAGES": ""}
    result = runner.invoke(app, list(args), input=stdin, env=env)
    return result.exit_code, result.stdout, result.stderr


def js(home: Path, *args: str, stdin: str | None = None) -> object:
    code, out, err = run(home, *args, "--json", stdin=stdin)
    assert code == 0, err
    return json.loads(out)


def test_first_admin_on_a_fresh_home(home: Path) -> None:
    code, out, err = run(home, "users", "add", "alice", "--role", "admin", "--password-stdin", stdin="very secret\n")
    assert code == 0, err
    assert "added user 'alice'" in out
    engine = make_engine(None, home)
    with session_factory(engine)() as s:
        alice = s.query(User).one()
        assert alice.role == "admin" and verify_password("very secret", alice.password_hash)
    code, out, err = run(home, "keys", "create", "alice", "--scope", "admin", "--scope", "inference", "--name", "boot")
    assert code == 0, err
    key = out.strip()
    assert "shown" in err and key.startswith("flx_") and key not in err
    with session_factory(engine)() as s:
        row = verify_key(s, key)
        assert row is not None and row.scopes == ["admin", "inference"]
    listed = js(home, "keys", "list")
    assert [k["prefix"] for k in listed] == [row.prefix] and key not in json.dumps(listed)
    code, out, err = run(home, "keys", "revoke", key)  # a pasted full key is found by its prefix, never echoed
    assert code == 0 and row.prefix in out and key not in out + err
    with session_factory(engine)() as s:
        assert verify_key(s, key) is None
    engine.dispose()


def test_users_lifecycle_and_errors(home: Path) -> None:
    js(home, "users", "add", "root", "--role", "admin")
    bob = js(home, "users", "add", "bob", "--name", "Bob B", "--email", "bob@uni.example", "--locale", "en")
    assert bob["locale"] == "en" and bob["role"] == "student" and "password_hash" not in bob
    assert js(home, "users", "set", "bob", "--role", "teacher")["role"] == "teacher"
    assert js(home, "users", "disable", "bob")["disabled"] is True
    assert js(home, "users", "enable", str(bob["id"]))["disabled"] is False
    assert [u["subject"] for u in js(home, "users", "list", "--role", "teacher")] == ["bob"]
    assert js(home, "users", "list", "--search", "' OR 1=1--") == []
    assert js(home, "users", "list", "--search", "%") == []
    assert js(home, "users", "passwd", "bob", "--stdin", stdin="another secret\n")["has_password"] is True
    shown = js(home, "users", "show", "bob")
    assert shown["groups"] == [] and shown["quota"]["used"]["tokens_per_day"] == 0
    code, _out, err = run(home, "users", "add", "bob")
    assert code == 1 and err.startswith("Error:") and "exists" in err
    code, _out, err = run(home, "users", "add", "x", "--role", "god")
    assert code == 1 and "role" in err and "Traceback" not in err
    code, _out, err = run(home, "users", "set", "root", "--role", "student", lang="de_DE.UTF-8")
    assert code == 1 and err.startswith("Fehler:") and "last enabled admin" in err
    code, _out, err = run(home, "users", "show", "nobody")
    assert code == 1 and "not found" in err
    code, out, _err = run(home, "users", "rm", "bob", "--yes", lang="de_DE.UTF-8")
    assert code == 0 and "gelöscht" in out
    assert [u["subject"] for u in js(home, "users", "list")] == ["root"]


def test_groups_courses_quotas_policies(home: Path) -> None:
    js(home, "users", "add", "carol")
    js(home, "users", "add", "dan")
    js(home, "groups", "add", "staff", "--title", "All staff")
    code, out, err = run(home, "groups", "join", "staff", "carol", "dan")
    assert code == 0 and out.count("member of 'staff'") == 2, err
    assert [u["subject"] for u in js(home, "groups", "members", "staff")] == ["carol", "dan"]
    js(home, "groups", "leave", "staff", "dan")
    assert js(home, "groups", "list")[0]["members"] == 1
    js(home, "courses", "add", "INF-101")
    js(home, "courses", "join", "INF-101", "carol", "--role", "tutor")
    assert js(home, "courses", "members", "INF-101")[0]["course_role"] == "tutor"
    key = js(home, "keys", "create", "carol", "--course", "INF-101", "--expires", "30", "--model", "smollm2:*")
    assert key["course_id"] is not None and key["models"] == ["smollm2:*"] and key["expires_at"]

    assert js(home, "quotas", "set", "--role", "student", "--tokens-per-day", "50000")["tokens_per_day"] == 50000
    assert js(home, "quotas", "set", "--user", "carol", "--requests-per-minute", "10")["requests_per_minute"] == 10
    js(home, "quotas", "set", "--course", "INF-101", "--tokens-per-week", "none", "--tokens-per-day", "7")
    js(home, "quotas", "set", "--key", key["prefix"], "--tokens-per-day", "99")
    assert {(q["kind"], q["label"]) for q in js(home, "quotas", "list")} == {
        ("role", "student"), ("user", "carol"), ("course", "INF-101"), ("key", key["prefix"])}
    assert js(home, "quotas", "show", "--user", "carol")["limits"]["requests_per_minute"] == 10
    js(home, "quotas", "clear", "--user", "carol")
    assert js(home, "quotas", "show", "--user", "carol")["limits_from"] == "role student"
    code, _out, err = run(home, "quotas", "set", "--role", "student", "--user", "carol", "--tokens-per-day", "1")
    assert code == 1 and "exactly one" in err
    code, _out, err = run(home, "quotas", "set", "--role", "student", "--tokens-per-day", "lots")
    assert code == 1 and "--tokens-per-day" in err

    made = js(home, "policies", "set", "llama3*", "--roles", "teacher,student", "--max-output", "512")
    assert made["allowed_roles"] == ["teacher", "student"] and made["allowed_groups"] is None
    changed = js(home, "policies", "set", "llama3*", "--groups", "staff", "--roles", "*")
    assert changed["id"] == made["id"] and changed["allowed_roles"] is None and changed["max_output"] == 512
    code, out, _err = run(home, "policies", "list")
    assert code == 0 and "llama3*" in out and "staff" in out
    js(home, "policies", "rm", "llama3*")
    assert js(home, "policies", "list") == []
    js(home, "courses", "rm", "INF-101")
    js(home, "groups", "rm", "staff")
    assert js(home, "groups", "list") == [] and js(home, "courses", "list") == []


def test_end_user_limits_of_a_service_key(home: Path) -> None:
    """A Moodle site's key with limits for each of its end users, at creation and later; a person's key refused."""
    js(home, "users", "add", "moodle", "--role", "service")
    js(home, "users", "add", "erin")
    key = js(home, "keys", "create", "moodle", "--end-user-tokens-per-day", "20000", "--end-user-requests-per-minute", "6")
    assert key["end_user_limits"]["tokens_per_day"] == 20000 and key["end_user_limits"]["requests_per_minute"] == 6
    changed = js(home, "quotas", "set", "--end-users-of", key["prefix"], "--tokens-per-week", "50000")
    assert (changed["kind"], changed["tokens_per_week"], changed["tokens_per_day"]) == ("enduser", 50000, 20000)
    assert [(q["kind"], q["label"]) for q in js(home, "quotas", "list", "--kind", "enduser")] == [("enduser", key["prefix"])]
    code, _out, err = run(home, "keys", "create", "erin", "--end-user-tokens-per-day", "5")
    assert code == 1 and "service" in err
    assert [k["owner"] for k in js(home, "keys", "list")] == ["moodle"]  # the refused key was not created either
    code, _out, err = run(home, "keys", "create", "moodle", "--end-user-tokens-per-day", "many")
    assert code == 1 and "--end-user-tokens-per-day" in err
    js(home, "quotas", "clear", "--end-users-of", key["prefix"])
    assert js(home, "quotas", "list", "--kind", "enduser") == []
    assert js(home, "usage", "--by", "end_user", "--key", key["prefix"]) == []
