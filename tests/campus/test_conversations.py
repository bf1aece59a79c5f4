"""Server-side chat history (/me/conversations) through the real app in-process:
the access middleware, routers and database of `create_app`, no model needed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from flexi.access.privacy import purge_expired
from flexi.config import load_settings
from flexi.db.models import ApiKey, Assistant, ChatMessage, Conversation, utcnow
from flexi.server.app import create_app
from tests.access_helpers import ServerDB


class Campus:
    def __init__(self, home: Path, **settings: Any) -> None:
        self.settings = load_settings(home=home, auth="on", **settings)
        self.client = TestClient(create_app(self.settings), base_url="http://localhost")
        self.client.__enter__()  # runs the lifespan: database migrated, access layer started
        self.db = ServerDB(home)

    def user(self, subject: str) -> tuple[int, dict[str, str]]:
        uid = self.db.add_user(subject, locale="en")
        return uid, {"Authorization": f"Bearer {self.db.add_key(uid)[1]}"}

    def close(self) -> None:
        self.db.close()
        self.client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    c = Campus(tmp_path_factory.mktemp("history") / "home", chat_history="server", chat_retention_days=10)
    yield c
    c.close()


CHAT = [{"role": "system", "content": "Sei knapp."}, {"role": "user", "content": "Was ist Varianz?"},
        {"role": "assistant", "content": "Die mittlere quadratische Abweichung."}]


def test_crud_of_own_conversations(campus: Campus) -> None:
    http = campus.client
    _uid, me = campus.user("hist-crud")
    assert http.get("/me/conversations", headers=me).json() == {"conversations": []}
    r = http.post("/me/conversations", headers=me, json={"title": "Statistik", "model": "smollm2:135m", "messages": CHAT})
    assert r.status_code == 201, r.text
    conv = r.json()
    assert conv["title"] == "Statistik" and conv["message_count"] == 3 and conv["assistant_id"] is None
    assert [(m["role"], m["content"]) for m in conv["messages"]] == [(m["role"], m["content"]) for m in CHAT]
    second = http.post("/me/conversations", headers=me, json={"title": "Zweites", "model": "m", "messages": []}).json()
    listed = http.get("/me/conversations", headers=me).json()["conversations"]
    assert [c["id"] for c in listed] == [second["id"], conv["id"]]  # newest first
    assert listed[1]["message_count"] == 3 and "messages" not in listed[1]
    assert set(listed[0]) == {"id", "title", "model", "assistant_id", "created_at", "updated_at", "message_count"}

    renamed = http.patch(f"/me/conversations/{conv['id']}", headers=me, json={"title": "Varianz"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Varianz"
    longer = CHAT + [{"role": "user", "content": "Und Standardabweichung?"}, {"role": "assistant", "content": "Die Wurzel."}]
    put = http.put(f"/me/conversations/{conv['id']}/messages", headers=me, json={"messages": longer})
    assert put.status_code == 200 and put.json()["message_count"] == 5
    shorter = http.put(f"/me/conversations/{conv['id']}/messages", headers=me, json={"messages": longer[:2]}).json()
    assert [m["content"] for m in shorter["messages"]] == ["Sei knapp.", "Was ist Varianz?"]  # regenerated: replaced
    got = http.get(f"/me/conversations/{conv['id']}", headers=me).json()
    assert got["title"] == "Varianz" and got["message_count"] == 2
    assert http.get("/me/conversations", headers=me).json()["conversations"][0]["id"] == conv["id"]

    assert http.delete(f"/me/conversations/{conv['id']}", headers=me).status_code == 204
    assert http.get(f"/me/conversations/{conv['id']}", headers=me).status_code == 404
    assert http.delete(f"/me/conversations/{conv['id']}", headers=me).status_code == 404
    with campus.db.session() as s:  # the messages went with it
        assert s.scalar(select(func.count()).select_from(ChatMessage).where(ChatMessage.conversation_id == conv["id"])) == 0


def test_someone_elses_conversation_is_like_a_missing_one(campus: Campus) -> None:
    http = campus.client
    _a, alice = campus.user("hist-alice")
    _b, bob = campus.user("hist-bob")
    conv = http.post("/me/conversations", headers=alice, json={"title": "privat", "model": "m", "messages": CHAT}).json()
    missing = http.get("/me/conversations/999999", headers=bob)
    for r in (http.get(f"/me/conversations/{conv['id']}", headers=bob),
              http.patch(f"/me/conversations/{conv['id']}", headers=bob, json={"title": "mine now"}),
              http.put(f"/me/conversations/{conv['id']}/messages", headers=bob, json={"messages": []}),
              http.delete(f"/me/conversations/{conv['id']}", headers=bob)):
        assert r.status_code == 404 and r.json()["error"].split(":")[0] == missing.json()["error"].split(":")[0]
    assert http.get("/me/conversations", headers=bob).json()["conversations"] == []
    assert http.get(f"/me/conversations/{conv['id']}", headers=alice).json()["title"] == "privat"
    assert http.get("/me/conversations/abc", headers=alice).status_code == 400
    assert http.get(f"/me/conversations/{2**70}", headers=alice).status_code == 404
    assert http.get("/me/conversations").status_code == 401


@pytest.mark.parametrize("body", [
    {"title": "x" * 201, "model": "m", "messages": []},
    {"title": "t", "model": "m", "messages": [{"role": "user", "content": "x"}] * 501},
    {"title": "t", "model": "m", "messages": [{"role": "user", "content": "x" * 200_001}]},
    {"title": "t", "model": "m", "messages": [{"role": "tool", "content": "x"}]},
    {"title": "t", "model": "m", "messages": [{"role": "user", "content": "x", "images": []}]},
    {"title": "t", "model": "m", "messages": [], "user_id": 1},
    {"title": "t", "messages": []},
    {"title": "t", "model": "m", "messages": "hello"},
    {"title": "t", "model": "m", "messages": [{"role": "assistant", "content": "x", "citations": [{"n": 0, "document_id": 1, "document": "d"}]}]},
    {"title": "t", "model": "m", "messages": [{"role": "assistant", "content": "x", "citations": [{"n": 1, "document_id": 1, "document": "d", "url": "javascript:"}]}]},
    {"title": "t", "model": "m", "messages": [{"role": "assistant", "content": "x", "citations": [{"n": 1, "document_id": 1, "document": "d"}] * 51}]},
])
def test_limits_and_unknown_fields_are_422(campus: Campus, body: dict[str, Any]) -> None:
    _uid, me = campus.user(f"hist-limits-{abs(hash(str(body)[:300]))}")
    r = campus.client.post("/me/conversations", headers=me, json=body)
    assert r.status_code == 422 and "error" in r.json()


SOURCES = [{"n": 1, "document_id": 7, "document": "skript.pdf", "page": 3, "text": "Die Varianz misst die Streuung."}]


def test_an_answers_sources_are_kept_with_it(campus: Campus) -> None:
    """A course assistant's citations survive in the server-side history (and its export), so a reopened
    conversation still shows and opens its sources; messages without them are unchanged."""
    http = campus.client
    _uid, me = campus.user("hist-sources")
    messages = [*CHAT, {"role": "assistant", "content": "Sie misst die Streuung [1].", "citations": SOURCES}]
    conv = http.post("/me/conversations", headers=me, json={"title": "Quellen", "model": "assistant/x", "messages": messages})
    assert conv.status_code == 201, conv.text
    got = http.get(f"/me/conversations/{conv.json()['id']}", headers=me).json()["messages"]
    assert got[-1]["citations"] == SOURCES and all("citations" not in m for m in got[:-1])
    replaced = http.put(f"/me/conversations/{conv.json()['id']}/messages", headers=me, json={"messages": messages[:-1]})
    assert replaced.status_code == 200
    assert all("citations" not in m for m in http.get(f"/me/conversations/{conv.json()['id']}", headers=me).json()["messages"])


def test_limits_on_change_and_replace(campus: Campus) -> None:
    http = campus.client
    _uid, me = campus.user("hist-limits-change")
    conv = http.post("/me/conversations", headers=me, json={"title": "t", "model": "m", "messages": CHAT}).json()
    assert http.patch(f"/me/conversations/{conv['id']}", headers=me, json={"title": "y" * 201}).status_code == 422
    assert http.patch(f"/me/conversations/{conv['id']}", headers=me, json={"user_id": 5}).status_code == 422
    ok = http.put(f"/me/conversations/{conv['id']}/messages", headers=me,
                  json={"messages": [{"role": "user", "content": "x" * 200_000}] * 2})
    assert ok.status_code == 200
    assert http.put(f"/me/conversations/{conv['id']}/messages", headers=me,
                    json={"messages": [{"role": "system", "content": "x"}] * 501}).status_code == 422
    assert http.put(f"/me/conversations/{conv['id']}/messages", headers=me, json=[]).status_code == 422


def test_assistant_link_must_be_usable(campus: Campus) -> None:
    http = campus.client
    teacher, _t = campus.user("hist-teacher")
    member, as_member = campus.user("hist-member")
    _o, outsider = campus.user("hist-outsider")
    course = campus.db.add_course("hist-course", {teacher: "teacher", member: "student"})
    with campus.db.session() as s:
        helper = Assistant(slug="hist-helper-00001", course_id=course, owner_id=teacher, name="Hilfe", model="m")
        s.add(helper)
        s.commit()
        helper_id = helper.id
    ok = http.post("/me/conversations", headers=as_member, json={"title": "t", "model": "m", "assistant_id": helper_id})
    assert ok.status_code == 201 and ok.json()["assistant_id"] == helper_id
    # the page reopens the conversation with its assistant by link, also one outside the person's courses
    assert ok.json()["assistant_slug"] == "hist-helper-00001"
    assert http.get(f"/me/conversations/{ok.json()['id']}", headers=as_member).json()["assistant_slug"] == "hist-helper-00001"
    hidden = http.post("/me/conversations", headers=outsider, json={"title": "t", "model": "m", "assistant_id": helper_id})
    gone = http.post("/me/conversations", headers=outsider, json={"title": "t", "model": "m", "assistant_id": 987654})
    assert hidden.status_code == gone.status_code == 404


def test_export_and_erase(campus: Campus) -> None:
    http = campus.client
    uid, me = campus.user("hist-leaver")
    with campus.db.session() as s:  # export and erasure need the account scope or a browser sign-in
        for key in s.scalars(select(ApiKey).where(ApiKey.owner_id == uid)):
            key.scopes = ["inference", "account"]
        s.commit()
    saved = http.post("/me/conversations", headers=me, json={"title": "Geheimnis", "model": "m", "messages": CHAT}).json()
    data = http.get("/me/export", headers=me).json()
    (conv,) = data["conversations"]
    assert conv["title"] == "Geheimnis" and [m["content"] for m in conv["messages"]] == [m["content"] for m in CHAT]
    assert data["processing"]["chat_history"] == "server" and data["processing"]["retention_days"]["conversations"] == 10
    assert http.delete("/me?confirm=true", headers=me).status_code == 204
    with campus.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Conversation).where(Conversation.user_id == uid)) == 0
        assert s.scalar(select(func.count()).select_from(ChatMessage).where(ChatMessage.conversation_id == saved["id"])) == 0


def test_retention_purge_deletes_stale_conversations(campus: Campus) -> None:
    http = campus.client
    _uid, me = campus.user("hist-retention")
    stale = http.post("/me/conversations", headers=me, json={"title": "alt", "model": "m", "messages": CHAT}).json()
    fresh = http.post("/me/conversations", headers=me, json={"title": "neu", "model": "m", "messages": CHAT}).json()
    with campus.db.session() as s:
        s.get(Conversation, stale["id"]).updated_at = utcnow() - timedelta(days=11)  # type: ignore[union-attr]
        s.commit()
    removed = purge_expired(campus.db.engine, campus.settings)
    assert removed["conversations"] >= 1
    assert http.get(f"/me/conversations/{stale['id']}", headers=me).status_code == 404
    assert http.get(f"/me/conversations/{fresh['id']}", headers=me).json()["message_count"] == 3
    with campus.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ChatMessage).where(ChatMessage.conversation_id == stale["id"])) == 0


def test_history_off_is_404_with_a_code(tmp_path: Path) -> None:
    off = Campus(tmp_path / "home")  # the default: FLEXI_CHAT_HISTORY=browser
    try:
        assert off.settings.chat_history == "browser"
        _uid, me = off.user("hist-off")
        for method, path, body in (("GET", "/me/conversations", None), ("GET", "/me/conversations/1", None),
                                   ("POST", "/me/conversations", {"title": "t", "model": "m"}),
                                   ("PATCH", "/me/conversations/1", {"title": "t"}),
                                   ("PUT", "/me/conversations/1/messages", {"messages": []}),
                                   ("DELETE", "/me/conversations/1", None)):
            r = off.client.request(method, path, headers=me, json=body)
            assert r.status_code == 404, (method, path)
            assert r.json()["code"] == "history_off" and "FLEXI_CHAT_HISTORY=browser" in r.json()["error"]
        with off.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Conversation)) == 0
    finally:
        off.close()


def test_auth_off_has_no_user_and_gets_403(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", auth="off", chat_history="server")
    with TestClient(create_app(settings), base_url="http://localhost") as http:
        r = http.get("/me/conversations")
        assert r.status_code == 403 and "FLEXI_AUTH=off" in r.json()["error"]
