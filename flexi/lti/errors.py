"""One error type for every refused LTI step: the message is an i18n key (flexi.i18n.lti), shown to the
person in their language; `reason` goes to the log — a short fixed word, never token contents."""

from __future__ import annotations


class LtiError(Exception):
    def __init__(self, key: str, status: int = 400, reason: str = "", **values: object) -> None:
        super().__init__(key)
        self.key, self.status, self.reason, self.values = key, status, reason or key, values
