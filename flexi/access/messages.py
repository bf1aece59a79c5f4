"""User-facing access messages in German and English.

The language is the request's (`Accept-Language`), else the user's stored
preference, else FLEXI_DEFAULT_LOCALE.
"""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "unauthorized": {
        "en": "authentication required: send an API key (Authorization: Bearer …) or sign in",
        "de": "Anmeldung erforderlich: bitte einen API-Schlüssel senden (Authorization: Bearer …) oder anmelden",
    },
    "invalid_credentials": {
        "en": "invalid, expired or revoked credentials",
        "de": "ungültige, abgelaufene oder widerrufene Zugangsdaten",
    },
    "forbidden_admin": {
        "en": "this action is for administrators only",
        "de": "diese Aktion ist Administratorinnen und Administratoren vorbehalten",
    },
    "forbidden_scope": {
        "en": "this API key may not be used for this action (scope {scope} missing)",
        "de": "dieser API-Schlüssel darf für diese Aktion nicht verwendet werden (Berechtigung {scope} fehlt)",
    },
    "terms": {
        "en": "please accept the current terms of use (version {version}) first: {url}",
        "de": "bitte zuerst die aktuellen Nutzungsbedingungen (Version {version}) akzeptieren: {url}",
    },
    "revoked": {
        "en": "access was revoked while the answer was being generated",
        "de": "der Zugang wurde während der Antwort widerrufen",
    },
    "quota_requests_per_minute": {
        "en": "request limit reached: {limit} requests per minute ({subject}); try again in {retry} s, at {reset}",
        "de": "Anfragelimit erreicht: {limit} Anfragen pro Minute ({subject}); bitte in {retry} s erneut versuchen, ab {reset}",
    },
    "quota_tokens_per_day": {
        "en": "daily token quota used up: {limit} tokens per day ({subject}); it resets at {reset}",
        "de": "Tageskontingent aufgebraucht: {limit} Tokens pro Tag ({subject}); es wird um {reset} zurückgesetzt",
    },
    "quota_tokens_per_week": {
        "en": "weekly token quota used up: {limit} tokens per week ({subject}); it resets at {reset}",
        "de": "Wochenkontingent aufgebraucht: {limit} Tokens pro Woche ({subject}); es wird am {reset} zurückgesetzt",
    },
    "subject_user": {"en": "your personal limit", "de": "Ihr persönliches Limit"},
    "subject_key": {"en": "limit of this API key", "de": "Limit dieses API-Schlüssels"},
    "subject_course": {"en": "limit of the course", "de": "Limit des Kurses"},
    "course_unknown": {
        "en": "unknown course or not a member: {course}",
        "de": "unbekannter Kurs oder keine Mitgliedschaft: {course}",
    },
}


def text(key: str, locale: str, **values: object) -> str:
    table = MESSAGES[key]
    return (table.get(locale) or table["en"]).format(**values)


def request_locale(accept_language: str | None, fallback: str) -> str:
    """The first of de/en named in Accept-Language (quality order), else `fallback`."""
    if not accept_language:
        return fallback
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, lang.strip().lower()[:2]))
    for _q, _i, lang in sorted(ranked):
        if lang in ("de", "en"):
            return lang
    return fallback
