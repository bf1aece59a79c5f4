"""Messages of the administration commands (`flexi users|keys|groups|courses|quotas|policies`), in
German and English. The rules and their refusals are `flexi.access.admin_ops`'s (keys in `access`)."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "user_added": {
        "en": "added user '{subject}' (id {id}, role {role})",
        "de": "Benutzer '{subject}' angelegt (ID {id}, Rolle {role})",
    },
    "user_changed": {"en": "updated user '{subject}'", "de": "Benutzer '{subject}' geändert"},
    "user_disabled": {
        "en": "disabled user '{subject}'; their keys and sessions stop working at once",
        "de": "Benutzer '{subject}' gesperrt; Schlüssel und Sitzungen gelten ab sofort nicht mehr",
    },
    "user_enabled": {"en": "enabled user '{subject}'", "de": "Benutzer '{subject}' entsperrt"},
    "user_removed": {
        "en": "deleted user '{subject}' with their keys and memberships",
        "de": "Benutzer '{subject}' samt Schlüsseln und Mitgliedschaften gelöscht",
    },
    "password_set": {"en": "password set for '{subject}'", "de": "Passwort für '{subject}' gesetzt"},
    "password_cleared": {"en": "password removed for '{subject}'", "de": "Passwort für '{subject}' entfernt"},
    "no_password": {"en": "no password on stdin", "de": "kein Passwort auf der Standardeingabe"},
    "password_prompt": {"en": "Password", "de": "Passwort"},
    "key_created": {
        "en": "created key {prefix} (id {id}) for '{owner}'",
        "de": "Schlüssel {prefix} (ID {id}) für '{owner}' angelegt",
    },
    "key_once": {
        "en": "this is the only time the full key is shown; store it now",
        "de": "der vollständige Schlüssel wird nur jetzt angezeigt; bitte jetzt sicher speichern",
    },
    "key_revoked": {"en": "revoked key {prefix} (id {id})", "de": "Schlüssel {prefix} (ID {id}) widerrufen"},
    "group_added": {"en": "added group '{name}' (id {id})", "de": "Gruppe '{name}' angelegt (ID {id})"},
    "group_removed": {"en": "deleted group '{name}'", "de": "Gruppe '{name}' gelöscht"},
    "course_added": {"en": "added course '{name}' (id {id})", "de": "Kurs '{name}' angelegt (ID {id})"},
    "course_removed": {"en": "deleted course '{name}'", "de": "Kurs '{name}' gelöscht"},
    "joined": {"en": "'{user}' is now a member of '{name}'", "de": "'{user}' ist jetzt Mitglied von '{name}'"},
    "already_member": {
        "en": "'{user}' was already a member of '{name}'",
        "de": "'{user}' war bereits Mitglied von '{name}'",
    },
    "left": {"en": "'{user}' left '{name}'", "de": "'{user}' ist nicht mehr Mitglied von '{name}'"},
    "quota_set": {"en": "quota set for {kind} {label}", "de": "Kontingent für {kind} {label} gesetzt"},
    "quota_cleared": {"en": "quota removed for {kind} {label}", "de": "Kontingent für {kind} {label} entfernt"},
    "policy_created": {
        "en": "created policy for '{pattern}' (id {id})",
        "de": "Richtlinie für '{pattern}' angelegt (ID {id})",
    },
    "policy_changed": {"en": "updated policy for '{pattern}'", "de": "Richtlinie für '{pattern}' geändert"},
    "policy_removed": {"en": "deleted policy for '{pattern}'", "de": "Richtlinie für '{pattern}' gelöscht"},
    "one_subject": {
        "en": "name exactly one of --role, --user, --key, --course, --end-users-of",
        "de": "genau eine der Optionen --role, --user, --key, --course, --end-users-of angeben",
    },
    "bad_number": {
        "en": "{option}: expected a whole number or 'none', got '{value}'",
        "de": "{option}: ganze Zahl oder 'none' erwartet, nicht '{value}'",
    },
    "nothing_to_set": {
        "en": "nothing to change; give at least one option",
        "de": "nichts zu ändern; bitte mindestens eine Option angeben",
    },
    "confirm_rm": {
        "en": "Delete user '{subject}' with all their keys and memberships?",
        "de": "Benutzer '{subject}' samt allen Schlüsseln und Mitgliedschaften löschen?",
    },
    "database": {"en": "cannot use the database {url}: {detail}", "de": "Datenbank {url} nicht nutzbar: {detail}"},
    "config": {"en": "invalid configuration: {detail}", "de": "ungültige Konfiguration: {detail}"},
    "empty": {"en": "(none)", "de": "(keine)"},
}
