"""Messages of prompt templates (issue 15): parameter errors of a run, and the template routes and CLI,
in German and English. Each parameter error names the parameter."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "tpl_param_unknown": {
        "en": "unknown parameter: {name} (this template takes: {known})",
        "de": "unbekannter Parameter: {name} (diese Vorlage nimmt: {known})",
    },
    "tpl_param_missing": {"en": "parameter {name} is required", "de": "der Parameter {name} fehlt"},
    "tpl_param_course": {
        "en": "parameter {name} is taken from the course and cannot be given",
        "de": "der Parameter {name} kommt aus dem Kurs und kann nicht angegeben werden",
    },
    "tpl_param_text": {"en": "parameter {name} must be text", "de": "der Parameter {name} muss ein Text sein"},
    "tpl_param_integer": {
        "en": "parameter {name} must be a whole number",
        "de": "der Parameter {name} muss eine ganze Zahl sein",
    },
    "tpl_param_number": {"en": "parameter {name} must be a number", "de": "der Parameter {name} muss eine Zahl sein"},
    "tpl_param_long": {
        "en": "parameter {name} is too long: {length} characters, at most {max} are allowed",
        "de": "der Parameter {name} ist zu lang: {length} Zeichen, höchstens {max} sind erlaubt",
    },
    "tpl_param_range": {
        "en": "parameter {name} must be between {min} and {max}",
        "de": "der Parameter {name} muss zwischen {min} und {max} liegen",
    },
    "tpl_param_huge": {
        "en": "parameter {name} is too large: numbers may be at most {max} in size",
        "de": "der Parameter {name} ist zu groß: Zahlen dürfen höchstens den Betrag {max} haben",
    },
    "tpl_client_field": {
        "en": "a prompt template builds its own prompt from its parameters: {field} cannot be sent with it",
        "de": "eine Vorlage baut ihren Prompt selbst aus ihren Parametern: {field} kann nicht mitgeschickt werden",
    },
    "tpl_param_enum": {
        "en": "parameter {name} must be one of: {values}",
        "de": "der Parameter {name} muss einer dieser Werte sein: {values}",
    },
    "tpl_parameters_json": {
        "en": "send the template's parameters as a JSON object in the last user message, e.g. {example}",
        "de": "bitte die Parameter der Vorlage als JSON-Objekt in der letzten Nachricht senden, z. B. {example}",
    },
    "tpl_missing": {
        "en": "no such prompt template, or you may not use it: {slug}",
        "de": "diese Vorlage gibt es nicht, oder Sie dürfen sie nicht verwenden: {slug}",
    },
    "tpl_version_missing": {
        "en": "template {slug} has no version {version}",
        "de": "die Vorlage {slug} hat keine Version {version}",
    },
    "tpl_edit": {
        "en": "only the course's teachers and administrators may create, change or delete its prompt templates",
        "de": "nur die Lehrenden des Kurses und Administratorinnen und Administratoren dürfen seine Vorlagen anlegen, "
              "ändern oder löschen",
    },
    "tpl_disabled": {
        "en": "this prompt template is switched off by its course's teachers",
        "de": "diese Vorlage wurde von den Lehrenden des Kurses abgeschaltet",
    },
    "tpl_slug_taken": {
        "en": "the name {slug} is taken by another template; choose another slug",
        "de": "der Name {slug} gehört schon einer anderen Vorlage; bitte einen anderen Kurznamen wählen",
    },
    # CLI
    "tpl_cli_none": {"en": "no prompt templates", "de": "keine Vorlagen"},
    "tpl_cli_added": {"en": "template {slug} created (version {version})",
                      "de": "Vorlage {slug} angelegt (Version {version})"},
    "tpl_cli_edited": {"en": "template {slug} changed: now version {version}",
                       "de": "Vorlage {slug} geändert: jetzt Version {version}"},
    "tpl_cli_removed": {"en": "template {slug} deleted", "de": "Vorlage {slug} gelöscht"},
    "tpl_cli_param": {
        "en": "parameters are NAME=VALUE (a number for integer and number parameters): {given}",
        "de": "Parameter werden als NAME=WERT angegeben (eine Zahl bei integer- und number-Parametern): {given}",
    },
    "tpl_cli_file": {"en": "cannot read {path}: {detail}", "de": "{path} kann nicht gelesen werden: {detail}"},
}
