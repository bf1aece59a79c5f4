"""Server messages of the access layer and the campus routes (the error texts of 401/403/404/409/429
answers), in German and English. The locale is chosen per request (`flexi.http.locale.locale_of`)."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
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
    "csrf": {
        "en": "this request lacks the page's security token (X-Flexi-CSRF); reload the page and try again",
        "de": "dieser Anfrage fehlt das Sicherheits-Token der Seite (X-Flexi-CSRF); bitte die Seite neu laden und erneut versuchen",
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
    "end_user_quota_service_only": {
        "en": "limits per end user only for keys of a service account (role service); {prefix} belongs to a person",
        "de": "Limits pro Endnutzer*in nur für Schlüssel eines Dienstkontos (Rolle service); {prefix} gehört einer Person",
    },
    "subject_enduser": {"en": "your own share as a user of this application",
                        "de": "Ihr eigener Anteil als Nutzer*in dieser Anwendung"},
    "course_unknown": {
        "en": "unknown course or not a member: {course}",
        "de": "unbekannter Kurs oder keine Mitgliedschaft: {course}",
    },
    "assistant_edit": {
        "en": "only the course's teachers and administrators may create, change or delete its assistants",
        "de": "nur die Lehrenden des Kurses und Administratorinnen und Administratoren dürfen seine Assistenten anlegen, ändern oder löschen",
    },
    "assistant_usage": {
        "en": "only the assistant's owner, the course's teachers and administrators may see its usage",
        "de": "nur die Person, die den Assistenten angelegt hat, die Lehrenden des Kurses und Administratorinnen und Administratoren dürfen seine Nutzung sehen",
    },
    "assistant_missing": {
        "en": "no such assistant, or it is not shared with you: {slug}",
        "de": "diesen Assistenten gibt es nicht, oder er ist nicht für Sie freigegeben: {slug}",
    },
    "assistant_disabled": {
        "en": "this assistant is switched off by its course's teachers",
        "de": "dieser Assistent wurde von den Lehrenden des Kurses abgeschaltet",
    },
    "assistant_course": {"en": "unknown course: {course}", "de": "unbekannter Kurs: {course}"},
    "conversation_missing": {"en": "no such conversation: {id}", "de": "dieses Gespräch gibt es nicht: {id}"},
    "conversations_full": {
        "en": "you have {limit} saved conversations, the most allowed; delete some first",
        "de": "Sie haben {limit} gespeicherte Gespräche, mehr sind nicht möglich; bitte zuerst einige löschen",
    },
    "history_off": {
        "en": "server-side chat history is off (FLEXI_CHAT_HISTORY=browser): conversations are kept in the browser",
        "de": "der Chatverlauf wird nicht auf dem Server gespeichert (FLEXI_CHAT_HISTORY=browser), sondern im Browser",
    },
    "key_not_found": {"en": "API key {key_id} not found", "de": "API-Schlüssel {key_id} nicht gefunden"},
    "key_scope_unknown": {
        "en": "unknown scope {scope}; possible scopes: inference, manage, admin",
        "de": "unbekannte Berechtigung {scope}; möglich sind: inference, manage, admin",
    },
    "key_scope_denied": {
        "en": "you may not create API keys with scope {scope}",
        "de": "Sie dürfen keine API-Schlüssel mit der Berechtigung {scope} anlegen",
    },
    "key_scope_owner": {
        "en": "scope {scope} needs a key owner with role admin",
        "de": "die Berechtigung {scope} setzt eine Inhaberin oder einen Inhaber mit der Rolle admin voraus",
    },
    "key_scopes_empty": {
        "en": "an API key needs at least one scope",
        "de": "ein API-Schlüssel braucht mindestens eine Berechtigung",
    },
    "key_wider": {
        "en": "an API key cannot create a key with more rights than it has itself ({what})",
        "de": "ein API-Schlüssel kann keinen Schlüssel mit mehr Rechten anlegen, als er selbst hat ({what})",
    },
    "key_expiry_invalid": {
        "en": "invalid expiry {value}: give a number of days (1 to 3650) or an ISO date such as 2030-12-31",
        "de": "ungültiges Ablaufdatum {value}: bitte eine Anzahl Tage (1 bis 3650) oder ein ISO-Datum wie 2030-12-31 angeben",
    },
    "key_expiry_past": {
        "en": "the expiry {value} is not in the future",
        "de": "das Ablaufdatum {value} liegt nicht in der Zukunft",
    },
    "key_expiry_both": {
        "en": "give either expires_in_days or expires_at, not both",
        "de": "bitte entweder expires_in_days oder expires_at angeben, nicht beides",
    },
    "key_name_invalid": {
        "en": "invalid key name: at most {limit} printable characters",
        "de": "ungültiger Schlüsselname: höchstens {limit} druckbare Zeichen",
    },
    "key_models_invalid": {
        "en": "invalid model list: 1 to {limit} model names or patterns such as llama3* or smollm2:135m",
        "de": "ungültige Modellliste: 1 bis {limit} Modellnamen oder Muster wie llama3* oder smollm2:135m",
    },
    "key_limit": {
        "en": "you already have {limit} active API keys; revoke one first",
        "de": "Sie haben bereits {limit} aktive API-Schlüssel; bitte zuerst einen widerrufen",
    },
    "key_owner_disabled": {"en": "the account is disabled", "de": "das Konto ist gesperrt"},
    "erase_confirm": {
        "en": "erasing your account deletes your keys, sign-ins and data; repeat the request with ?confirm=true",
        "de": "Das Löschen Ihres Kontos entfernt Ihre Schlüssel, Anmeldungen und Daten; bitte mit ?confirm=true wiederholen",
    },
    "no_terms": {
        "en": "no terms of use are configured on this server",
        "de": "auf diesem Server sind keine Nutzungsbedingungen hinterlegt",
    },
    "terms_version": {
        "en": "only the current terms of use (version {version}) can be accepted",
        "de": "nur die aktuellen Nutzungsbedingungen (Version {version}) können akzeptiert werden",
    },
    "user_gone": {"en": "no such user", "de": "unbekannte Person"},
    "login_failed": {
        "en": "sign-in failed: wrong user name or password",
        "de": "Anmeldung fehlgeschlagen: Benutzername oder Passwort falsch",
    },
    "login_throttled": {
        "en": "too many failed sign-ins; try again in {retry} s",
        "de": "zu viele fehlgeschlagene Anmeldungen; bitte in {retry} s erneut versuchen",
    },
    "shared_state_unavailable": {
        "en": "the service cannot check its limits right now (its shared state is unreachable); please try again in {retry} s",
        "de": "der Dienst kann seine Grenzen gerade nicht prüfen (der gemeinsame Zustand ist nicht erreichbar); bitte in {retry} s erneut versuchen",
    },
    "login_unavailable": {
        "en": "sign-in is unavailable right now (the service's shared state is unreachable); please try again in {retry} s",
        "de": "die Anmeldung ist gerade nicht möglich (der gemeinsame Zustand des Dienstes ist nicht erreichbar); bitte in {retry} s erneut versuchen",
    },
    "too_many_requests": {
        "en": "too many requests at once: you already have {limit} requests running or waiting for {model}; wait for one to finish and try again in {retry} s",
        "de": "zu viele gleichzeitige Anfragen: Sie haben bereits {limit} laufende oder wartende Anfragen an {model}; bitte warten, bis eine fertig ist, und in {retry} s erneut versuchen",
    },
    "backends_down": {
        "en": "every backend serving {model} is unavailable at the moment; try again in {retry} s",
        "de": "alle Backends, die {model} bereitstellen, sind gerade nicht erreichbar; bitte in {retry} s erneut versuchen",
    },
}
