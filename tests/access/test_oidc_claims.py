"""Claims → Flexi identity, and the redirect guard."""

from __future__ import annotations

import pytest

from flexi.access.oidc import OidcError, identity_from_claims, safe_next
from flexi.config import load_settings


def test_roles_map_and_the_most_privileged_wins(tmp_path) -> None:
    s = load_settings(home=tmp_path, oidc_role_claim="realm_access.roles",
                      oidc_role_map={"faculty": "teacher", "phd": "researcher"})
    ident = identity_from_claims({"sub": "x", "realm_access": {"roles": ["student", "phd", "faculty", "bogus"]},
                                  "groups": ["b", "a", " ", 3], "name": "N", "email": 7}, s)
    assert (ident.role, ident.groups, ident.name, ident.email) == ("teacher", ["a", "b"], "N", None)
    # a claim value named like a role maps to it, but "admin" only through an explicit map entry (issue 11)
    assert identity_from_claims({"sub": "y", "realm_access": {"roles": "researcher"}}, s).role == "researcher"
    assert identity_from_claims({"sub": "y", "realm_access": {"roles": "admin"}}, s).role is None
    explicit = load_settings(home=tmp_path, oidc_role_claim="realm_access.roles", oidc_role_map={"admin": "admin"})
    assert identity_from_claims({"sub": "y", "realm_access": {"roles": "admin"}}, explicit).role == "admin"
    assert identity_from_claims({"sub": "z", "realm_access": ["not", "a", "dict"]}, s).role is None
    with pytest.raises(OidcError):
        identity_from_claims({"name": "no subject"}, s)


@pytest.mark.parametrize("value, expected", [("/me", "/me"), ("/chat?x=1", "/chat?x=1"), (None, "/"),
                                             ("https://evil", "/"), ("//evil", "/"), ("/\\evil", "/"),
                                             ("javascript:x", "/"), ("/a\nb", "/")])
def test_only_local_redirects(value, expected) -> None:
    assert safe_next(value) == expected
