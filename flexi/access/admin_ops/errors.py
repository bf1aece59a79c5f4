"""`AdminError`: how an administrative operation refuses, for the REST layer and the CLI alike.

Every refusal carries an HTTP `status`: 400 (bad input), 403, 404 (no such thing, or not yours) or 409
(conflict); the REST layer renders it as JSON, the CLI prints it. Refusals a student may read (their own
keys) carry a key of the message catalogue (`flexi.i18n`) so they can be shown in German or English.
"""

from __future__ import annotations

from collections.abc import Mapping

from flexi import i18n


class AdminError(Exception):
    """A refused administrative operation: `message` (English) and HTTP `status`.
    `key`/`values` name an entry of `flexi.i18n` for a localized text."""

    def __init__(self, message: str, status: int = 400, *, key: str | None = None,
                 values: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.key = key
        self.values = dict(values or {})

    def localized(self, locale: str) -> str:
        return i18n.text(self.key, locale, **self.values) if self.key else self.message


def refusal(key: str, status: int = 400, **values: object) -> AdminError:
    """A refusal with a catalogue text (`key`, `values`); its plain message is the English one."""
    return AdminError(i18n.text(key, "en", **values), status, key=key, values=values)
