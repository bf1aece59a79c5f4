"""The LTI shell's requests (X-Flexi-LTI) use only the LTI session cookie: a first-party session cookie sent
into the platform's frame (Moodle and Flexi on one site) never counts there, and the header never adds one."""

from __future__ import annotations

from flexi.access.credentials import Credential, extract, session_token

BOTH = "flexi_session=first; flexi_lti_session=lti"
SHELL = [(b"X-Flexi-LTI", b"1")]


def test_the_shell_header_narrows_to_the_lti_cookie() -> None:
    assert extract([], BOTH) == Credential("session", "first")  # the first-party page as before
    assert extract(SHELL, BOTH) == Credential("session", "lti")
    assert extract(SHELL, "flexi_session=first") is None  # no LTI session: nobody (401), not the first-party one
    assert extract([], "flexi_lti_session=lti") == Credential("session", "lti")


def test_secure_names_and_keys_are_unchanged_by_the_header() -> None:
    secure = "__Host-flexi_session=first; __Host-flexi_lti_session=lti; flexi_lti_session=planted"
    assert session_token(secure, True, only_lti=True) == "lti"  # behind HTTPS only the __Host- cookie counts
    assert extract(SHELL + [(b"authorization", b"Bearer k")], BOTH) == Credential("key", "k")
