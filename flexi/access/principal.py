"""The authenticated caller, as every later check sees it."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is asking. Built once per request by the authenticator; immutable so
    no later step can widen it. `key_*` fields are set when an API key was used,
    `session` when a browser sign-in was used; neither for `auth=off`."""

    user_id: int | None
    subject: str
    pseudonym: str
    role: str
    locale: str
    groups: frozenset[str] = frozenset()
    courses: frozenset[int] = frozenset()  # ids of courses the user is a member of
    key_id: int | None = None
    key_prefix: str | None = None
    key_scopes: tuple[str, ...] = ()
    key_models: tuple[str, ...] | None = None
    key_course_id: int | None = None
    session: str | None = None  # hash of the browser session token
    local: bool = False  # auth=off: the machine's own user

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN and self.has_scope("admin")

    def has_scope(self, scope: str) -> bool:
        """Keys with no scopes carry all of their owner's rights; otherwise only the named ones."""
        return self.key_id is None or not self.key_scopes or scope in self.key_scopes



def splits_end_users(principal: Principal) -> bool:
    """Whether a caller's requests are divided among its application's end users (OpenAI's `user`): only
    a `service` user's API key (a Moodle site, a tenant) may; a student's key must not multiply its share.
    The one rule for both per-end-user quotas (flexi.access.quota) and the fair queue (`Caller.identity_for`):
    a key-less client mapped to a service USER (not a key) splits neither, its end users share one budget."""
    return principal.key_id is not None and principal.role == "service"
