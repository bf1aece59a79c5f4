"""Messages of `flexi loadtest` in English and German.

The language follows the CLI's rule (LC_ALL, LC_MESSAGES, LANG; "de…" = German),
using `flexi.cli.messages.language`. Result files (results.md/json) stay in
English so that runs from different machines can be compared and parsed.
"""

from __future__ import annotations

from flexi.cli.messages import language

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "error": "Error: {message}",
        "warning": "Warning: {message}",
        "unreachable": "cannot reach {url} ({detail}); is the server running and is --url right?",
        "bad_api": 'unknown --api "{value}"; use "ollama" or "openai"',
        "bad_levels": 'invalid --levels "{value}"; use positive whole numbers separated by commas, e.g. 1,10,30',
        "bad_positive": "{option} must be greater than 0 (got {value})",
        "bad_non_negative": "{option} must not be negative (got {value})",
        "bad_url": 'invalid --url "{value}"',
        "prompt_file_missing": "prompt file not found: {path}",
        "prompt_file_unreadable": "cannot read prompt file {path}: {detail}",
        "prompt_file_json": "prompt file {path}: invalid JSON ({detail})",
        "prompt_file_json_shape": "prompt file {path}: the JSON must be a list of strings",
        "prompt_file_empty": "prompt file {path} contains no prompts",
        "out_dir": "cannot create the output directory {path}: {detail}",
        "target": "Load test of {url} ({api} API, model {model}): {prompts} prompts × levels {levels} × {reps} repetition(s) = {total} requests",
        "warmup": "Warm-up request (not counted) …",
        "warmup_failed": "the warm-up request failed ({detail}); continuing, failures will be recorded",
        "progress": "prompt {prompt}/{prompts} · {level} concurrent · run {rep}/{reps}",
        "no_matplotlib": "matplotlib is not installed; skipping latency.png (pip install matplotlib)",
        "chart_failed": "could not draw latency.png: {detail}",
        "written": "Results written to {path}",
        "failures": "{count} of {total} requests failed or timed out (see results.json)",
        "interrupted": "interrupted",
    },
    "de": {
        "error": "Fehler: {message}",
        "warning": "Warnung: {message}",
        "unreachable": "{url} ist nicht erreichbar ({detail}); läuft der Server und stimmt --url?",
        "bad_api": 'unbekannte --api "{value}"; erlaubt sind "ollama" und "openai"',
        "bad_levels": 'ungültige --levels "{value}"; positive ganze Zahlen durch Kommas getrennt, z. B. 1,10,30',
        "bad_positive": "{option} muss größer als 0 sein (angegeben: {value})",
        "bad_non_negative": "{option} darf nicht negativ sein (angegeben: {value})",
        "bad_url": 'ungültige --url "{value}"',
        "prompt_file_missing": "Prompt-Datei nicht gefunden: {path}",
        "prompt_file_unreadable": "Prompt-Datei {path} nicht lesbar: {detail}",
        "prompt_file_json": "Prompt-Datei {path}: ungültiges JSON ({detail})",
        "prompt_file_json_shape": "Prompt-Datei {path}: das JSON muss eine Liste von Zeichenketten sein",
        "prompt_file_empty": "Prompt-Datei {path} enthält keine Prompts",
        "out_dir": "Ausgabeverzeichnis {path} kann nicht angelegt werden: {detail}",
        "target": "Lasttest von {url} ({api}-API, Modell {model}): {prompts} Prompts × Stufen {levels} × {reps} Wiederholung(en) = {total} Anfragen",
        "warmup": "Aufwärmanfrage (wird nicht gezählt) …",
        "warmup_failed": "die Aufwärmanfrage schlug fehl ({detail}); es geht weiter, Fehler werden protokolliert",
        "progress": "Prompt {prompt}/{prompts} · {level} gleichzeitig · Lauf {rep}/{reps}",
        "no_matplotlib": "matplotlib ist nicht installiert; latency.png wird übersprungen (pip install matplotlib)",
        "chart_failed": "latency.png konnte nicht gezeichnet werden: {detail}",
        "written": "Ergebnisse gespeichert in {path}",
        "failures": "{count} von {total} Anfragen schlugen fehl oder überschritten die Zeit (siehe results.json)",
        "interrupted": "abgebrochen",
    },
}


def t(key: str, **values: object) -> str:
    """The message `key` in the user's language, formatted with `values`."""
    template = MESSAGES[language()].get(key) or MESSAGES["en"][key]
    return template.format(**values) if values else template
