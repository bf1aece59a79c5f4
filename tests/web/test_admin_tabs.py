"""The administration's groups, courses and model-policy tabs in a real Chromium against a real server.

Every step done in the page is checked through the REST API (admin key) and, for policies,
through what the policy does: which students see the model in /api/tags. So a tab that
draws but sends the wrong request fails here, as does one that no longer draws.
The page fixtures (CSP violations, script errors and foreign requests fail a test) and
the axe check come from test_web_ui.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.web.test_web_ui import PASSWORD, Campus, axe, page_of, shot, sign_in  # noqa: F401 - page_of is a fixture
from tests.conftest import MODEL, start_server, stop_server

pytestmark = pytest.mark.e2e


@dataclass
class AdminCampus(Campus):
    keys: dict[str, str] = field(default_factory=dict)  # API keys, to check each step through the REST API


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminCampus]:
    """A server with auth on (no terms to accept), an admin and three users, and API keys to check with."""
    home = tmp_path_factory.mktemp("admintabs") / "home"
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_DEFAULT_LOCALE": "de"})
    db = ServerDB(home)
    c = AdminCampus(srv, db)
    hashed = hash_password(PASSWORD)
    for subject, role in (("root", "admin"), ("anna", "student"), ("ben", "student"), ("lea", "teacher")):
        c.users[subject] = db.add_user(subject, role=role, password_hash=hashed, display_name=subject.title())
    c.keys = {"root": db.add_key(c.users["root"], scopes=["admin", "inference"])[1],
              "anna": db.add_key(c.users["anna"])[1], "ben": db.add_key(c.users["ben"])[1]}
    try:
        yield c
    finally:
        stop_server(srv)


def rest(campus: AdminCampus, method: str, path: str, who: str = "root", **kwargs: Any) -> Any:
    r = httpx.request(method, campus.srv.url + path, headers={"Authorization": f"Bearer {campus.keys[who]}"},
                      timeout=30, **kwargs)
    r.raise_for_status()
    return r.json() if r.content else None


def admin_page(page_of: Any, campus: AdminCampus, tab: str, locale: str = "de-DE") -> Any:
    page = page_of(locale)
    sign_in(page, campus, "root")
    page.wait_for_selector("#prompt")
    page.goto(f"{campus.srv.url}/#/admin/{tab}")
    ready(page, f"/admin/{tab}")
    return page


def ready(page: Any, path: str) -> None:
    """Wait until the router has drawn `path` (app.js marks the outlet)."""
    page.wait_for_selector(f"#outlet[data-ready='{path}']")


def refusal_shown(page: Any, action: Callable[[], None]) -> None:
    """`action` makes the server refuse a change (409); the page shows the server's own message."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.status == 409) as refused:
        action()
    message = refused.value.json()["error"]
    assert message
    page.wait_for_function("m => document.querySelector('p.error[role=alert]').textContent === m", arg=message)


def by_name(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in rows if r.get("name") == name or r.get("pattern") == name), None)


# --- groups ----------------------------------------------------------------------------------------------
def test_group_create_search_member_add_remove_and_delete(page_of: Any, campus: AdminCampus, axe_source: str) -> None:
    page = admin_page(page_of, campus, "groups")
    assert page.locator("main nav a[aria-current=page]").inner_text() == "Gruppen"
    page.fill("#groups-new-name", "lab-ki")
    page.fill("#groups-new-title", "KI-Labor")
    page.click("form button:has-text('Anlegen')")
    row = page.locator("tbody tr", has_text="lab-ki")
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "KI-Labor" and row.locator("td").nth(2).inner_text() == "0"
    assert page.evaluate("() => document.activeElement.id") == "groups-new-name"  # ready for the next one
    group = by_name(rest(campus, "GET", "/admin/groups")["groups"], "lab-ki")
    assert group is not None and group["title"] == "KI-Labor"

    # the server's refusal is shown in the page
    page.fill("#groups-new-name", "lab-ki")
    refusal_shown(page, lambda: page.press("#groups-new-name", "Enter"))

    # search narrows the list (on the server)
    rest(campus, "POST", "/admin/groups", json={"name": "chemie"})
    page.fill("#groups-search", "chem")
    page.press("#groups-search", "Enter")
    page.wait_for_selector("tbody tr:has-text('chemie')")
    assert page.locator("tbody tr", has_text="lab-ki").count() == 0
    page.fill("#groups-search", "")
    page.press("#groups-search", "Enter")
    row.wait_for()

    # the group's page: add a member by user name, with the keyboard
    row.locator("a", has_text="lab-ki").click()
    ready(page, f"/admin/groups/{group['id']}")
    page.wait_for_selector("h2:has-text('Gruppe lab-ki')")
    page.fill("#groups-member", "niemand")
    page.press("#groups-member", "Enter")
    page.wait_for_selector("p.error[role=alert]:has-text('Es gibt keine Person')")
    page.fill("#groups-member", "anna")
    page.press("#groups-member", "Enter")
    member = page.locator("tbody tr", has_text="anna")
    member.wait_for()
    assert member.locator("td").nth(1).inner_text() == "Anna"
    page.wait_for_selector("#groups-member:focus")
    users = rest(campus, "GET", f"/admin/groups/{group['id']}")["users"]
    assert [u["subject"] for u in users] == ["anna"]
    assert axe(page, axe_source) == []
    shot(page, "admin-group")

    # remove the member
    page.get_by_role("button", name="anna aus lab-ki entfernen").click()
    page.wait_for_selector("p.hint:has-text('Noch nichts vorhanden')")
    assert rest(campus, "GET", f"/admin/groups/{group['id']}")["users"] == []

    # delete: dismissing the question keeps the group, accepting deletes it
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Gruppe lab-ki löschen").click()
    assert by_name(rest(campus, "GET", "/admin/groups")["groups"], "lab-ki") is not None
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Gruppe lab-ki löschen").click()
    ready(page, "/admin/groups")
    page.wait_for_selector("tbody tr:has-text('chemie')")
    assert page.locator("tbody tr", has_text="lab-ki").count() == 0
    assert by_name(rest(campus, "GET", "/admin/groups")["groups"], "lab-ki") is None

    # deleting from the list works as well
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Gruppe chemie löschen").click()
    page.wait_for_selector("p.hint:has-text('Noch nichts vorhanden')")
    assert rest(campus, "GET", "/admin/groups")["groups"] == []


# --- courses ----------------------------------------------------------------------------------------------
def test_course_create_member_with_course_role_change_remove_and_delete(page_of: Any, campus: AdminCampus,
                                                                         axe_source: str) -> None:
    page = admin_page(page_of, campus, "courses", locale="en-GB")
    page.fill("#courses-new-name", "bio201")
    page.fill("#courses-new-title", "Cell biology")
    page.click("form button:has-text('Create')")
    row = page.locator("tbody tr", has_text="bio201")
    row.wait_for()
    course = by_name(rest(campus, "GET", "/admin/courses")["courses"], "bio201")
    assert course is not None and course["title"] == "Cell biology"
    assert axe(page, axe_source) == []

    row.locator("a", has_text="bio201").click()
    ready(page, f"/admin/courses/{course['id']}")
    page.wait_for_selector("h2:has-text('Course bio201')")
    page.fill("#courses-member", "ben")
    page.select_option("#courses-member-role", "tutor")
    page.click("form button:has-text('Add a member')")
    role = page.get_by_role("combobox", name="Course role of ben")
    role.wait_for()
    assert role.input_value() == "tutor"
    members = rest(campus, "GET", f"/admin/courses/{course['id']}")["users"]
    assert [(u["subject"], u["course_role"]) for u in members] == [("ben", "tutor")]
    page.fill("#courses-member", "lea")
    page.select_option("#courses-member-role", "teacher")
    page.press("#courses-member", "Enter")
    page.get_by_role("combobox", name="Course role of lea").wait_for()
    assert axe(page, axe_source) == []
    shot(page, "admin-course")

    # change ben's course role in the list
    with page.expect_response(lambda r: r.request.method == "PUT" and "/members/" in r.url) as changed:
        role.select_option("student")
    assert changed.value.ok
    members = rest(campus, "GET", f"/admin/courses/{course['id']}")["users"]
    assert {u["subject"]: u["course_role"] for u in members} == {"ben": "student", "lea": "teacher"}
    assert page.locator("p.error[role=alert]").inner_text() == ""

    page.get_by_role("button", name="Remove ben from bio201").click()
    page.get_by_role("combobox", name="Course role of ben").wait_for(state="detached")
    members = rest(campus, "GET", f"/admin/courses/{course['id']}")["users"]
    assert [u["subject"] for u in members] == ["lea"]

    page.click("a:has-text('Back to the list')")
    ready(page, "/admin/courses")
    assert page.locator("tbody tr", has_text="bio201").locator("td").nth(2).inner_text() == "1"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete course bio201").click()
    page.wait_for_selector("p.hint:has-text('Nothing here yet')")
    assert by_name(rest(campus, "GET", "/admin/courses")["courses"], "bio201") is None


# --- model policies -----------------------------------------------------------------------------------------
def models_of(campus: AdminCampus, who: str) -> list[str]:
    return [m["name"] for m in rest(campus, "GET", "/api/tags", who=who)["models"]]


def test_policy_restricting_a_model_to_a_group_edit_and_delete(page_of: Any, campus: AdminCampus, axe_source: str) -> None:
    lab = rest(campus, "POST", "/admin/groups", json={"name": "lab"})
    rest(campus, "PUT", f"/admin/groups/{lab['id']}/members/{campus.users['ben']}")
    assert MODEL in models_of(campus, "anna") and MODEL in models_of(campus, "ben")  # open by default

    page = admin_page(page_of, campus, "policies", locale="en-GB")
    page.wait_for_selector("p.hint:has-text('Nothing here yet')")
    page.fill("#policy-pattern", MODEL)
    page.get_by_role("checkbox", name="lab", exact=True).check()
    page.fill("#policy-output", "64")
    page.click("form button:has-text('Create')")
    row = page.locator("tbody tr", has_text=MODEL)
    row.wait_for()
    assert [row.locator("td").nth(i).inner_text() for i in range(4)] == [MODEL, "lab", "–", "64"]
    policy = by_name(rest(campus, "GET", "/admin/policies")["policies"], MODEL)
    assert policy == {"id": policy["id"], "pattern": MODEL, "allowed_roles": None, "allowed_groups": ["lab"],
                      "max_context": None, "max_output": 64}
    assert MODEL not in models_of(campus, "anna") and MODEL in models_of(campus, "ben")  # the rule works
    assert axe(page, axe_source) == []
    shot(page, "admin-policies")

    # a second policy for the same model: the server's refusal shows in the page
    page.fill("#policy-pattern", MODEL)
    refusal_shown(page, lambda: page.press("#policy-pattern", "Enter"))

    # edit: students too, a context cap instead of the output cap
    row.get_by_role("link", name=f"Edit the policy for {MODEL}").click()
    ready(page, f"/admin/policies/{policy['id']}")
    assert page.input_value("#policy-pattern") == MODEL and page.input_value("#policy-output") == "64"
    assert page.get_by_role("checkbox", name="lab", exact=True).is_checked()
    page.get_by_role("checkbox", name="Student", exact=True).check()
    page.fill("#policy-output", "")
    page.fill("#policy-context", "512")
    assert axe(page, axe_source) == []
    page.click("button:has-text('Save')")
    ready(page, "/admin/policies")
    assert [row.locator("td").nth(i).inner_text() for i in range(4)] == [MODEL, "Student, lab", "512", "–"]
    policy = by_name(rest(campus, "GET", "/admin/policies")["policies"], MODEL)
    assert (policy["allowed_roles"], policy["allowed_groups"], policy["max_context"], policy["max_output"]) == (
        ["student"], ["lab"], 512, None)
    assert MODEL in models_of(campus, "anna")

    # search, then delete after the question
    page.fill("#policies-search", "nomatch")
    page.press("#policies-search", "Enter")
    page.wait_for_selector("p.hint:has-text('Nothing here yet')")
    page.fill("#policies-search", "smollm")
    page.press("#policies-search", "Enter")
    row.wait_for()
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Delete the policy for {MODEL}").click()
    page.wait_for_selector("p.hint:has-text('Nothing here yet')")
    assert rest(campus, "GET", "/admin/policies")["policies"] == []
    rest(campus, "DELETE", f"/admin/groups/{lab['id']}")


def test_editing_a_policy_changes_only_what_was_changed(page_of: Any, campus: AdminCampus) -> None:
    """An empty role list (administrators only, set through the API or CLI) shows as nothing ticked,
    which in the form means everyone: saving another field must not open the model to everyone."""
    policy = rest(campus, "POST", "/admin/policies", json={"pattern": "secret*", "allowed_roles": []})
    try:
        page = admin_page(page_of, campus, "policies")
        row = page.locator("tbody tr", has_text="secret*")
        assert row.locator("td").nth(1).inner_text() == "nur Administration"
        row.get_by_role("link", name="Richtlinie für secret* bearbeiten").click()
        ready(page, f"/admin/policies/{policy['id']}")
        assert page.locator("#policy-pattern:focus").count() == 1  # the form starts where the work is
        page.fill("#policy-output", "32")
        with page.expect_request(lambda r: r.method == "PATCH") as sent:
            page.click("button:has-text('Speichern')")
        assert sent.value.post_data_json == {"max_output": 32}
        ready(page, "/admin/policies")
        after = rest(campus, "GET", f"/admin/policies/{policy['id']}")
        assert (after["allowed_roles"], after["allowed_groups"], after["max_output"]) == ([], None, 32)
    finally:
        rest(campus, "DELETE", f"/admin/policies/{policy['id']}")
