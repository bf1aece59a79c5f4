"""User-facing CLI messages in English and German.

German is chosen when LC_ALL, LC_MESSAGES or LANG (the first one set, in that
order, as in POSIX) starts with "de". Table headers, progress lines sent by the
server and `--verbose` statistics stay in Ollama's English form so scripts can
parse them.
"""

from __future__ import annotations

import os

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "error": "Error: {message}",
        "warning": "Warning: {message}",
        "connect": "could not connect to Flexi at {url}; is `flexi serve` running?",
        "timeout": "timed out talking to Flexi at {url}",
        "transport": "connection to Flexi at {url} failed: {detail}",
        "http_status": "the server answered {status} {reason}",
        "bad_stream": "the server sent an invalid response line: {line}",
        "copied": "copied '{src}' to '{dst}'",
        "deleted": "deleted '{name}'",
        "stop_not_found": 'couldn\'t find model "{name}" to stop',
        "server_version": "flexi version is {version}",
        "client_version": "client version is {version}",
        "no_server": "could not connect to a running Flexi instance",
        "interrupted": "interrupted",
        "bye_hint": "Use Ctrl + d or /bye to exit.",
        "cleared": "Cleared session context",
        "system_set": "Set system message.",
        "parameter_set": "Set parameter '{name}' to '{value}'",
        "verbose_on": "Set 'verbose' mode.",
        "quiet_on": "Set 'quiet' mode.",
        "format_json": "Set format to 'json' mode.",
        "format_off": "Disabled format.",
        "wordwrap_on": "Set 'wordwrap' mode.",
        "wordwrap_off": "Set 'nowordwrap' mode.",
        "loading": "Loading model '{name}'",
        "unknown_command": "Unknown command '{command}'. Type /? for help",
        "usage_set": "Usage: /set system <text> | parameter <name> <value> | verbose | quiet | format json | noformat | wordwrap | nowordwrap",
        "usage_show": "Usage: /show info | license | modelfile | parameters | system | template",
        "usage_load": "Usage: /load <model>",
        "nothing_to_show": "No {what} was specified for this model.",
        "repl_help": (
            "Available Commands:\n"
            "  /set            Set session variables (system, parameter, verbose, format, wordwrap)\n"
            "  /show           Show model information\n"
            "  /load <model>   Load a session or model\n"
            "  /clear          Clear session context\n"
            "  /bye            Exit\n"
            "  /?, /help       Help for a command\n"
            "\n"
            'Use """ to begin a multi-line message.'
        ),
        "gathering": "gathering model components",
        "copying": "copying file {digest}",
        "hashing": "hashing {name}",
        "using_blob": "using existing layer {digest}",
        "file_not_found": "file not found: {path}",
        "no_modelfile": "no Modelfile found at {path}; use --file",
        "directory_from": "{path} is a directory; only GGUF files can be imported",
        "modelfile_error": "Modelfile line {line}: {problem}",
        "modelfile_unknown": 'unknown instruction "{word}" (use FROM, TEMPLATE, SYSTEM, PARAMETER, LICENSE, ADAPTER, MESSAGE)',
        "modelfile_missing_value": "missing value for {word}",
        "modelfile_unterminated": 'unterminated """ string',
        "modelfile_trailing": 'unexpected text after closing """',
        "modelfile_no_from": "the Modelfile has no FROM instruction",
        "modelfile_bad_message": 'MESSAGE needs a role and content, e.g. MESSAGE user "Hello"',
        "show_one_flag": "use only one of --modelfile, --parameters, --template, --system, --license",
        "bad_keep_alive": 'invalid duration "{value}"; use e.g. "5m", "1h", "30s", 0 or -1',
        "bad_format": 'unsupported format "{value}"; only "json" is supported',
        "no_models": "no models found; try `flexi pull smollm2:135m`",
    },
    "de": {
        "error": "Fehler: {message}",
        "warning": "Warnung: {message}",
        "connect": "Keine Verbindung zu Flexi unter {url}; läuft `flexi serve`?",
        "timeout": "Zeitüberschreitung bei der Verbindung zu Flexi unter {url}",
        "transport": "Verbindung zu Flexi unter {url} fehlgeschlagen: {detail}",
        "http_status": "der Server antwortete mit {status} {reason}",
        "bad_stream": "der Server schickte eine ungültige Antwortzeile: {line}",
        "copied": "'{src}' nach '{dst}' kopiert",
        "deleted": "'{name}' gelöscht",
        "stop_not_found": 'Modell "{name}" zum Anhalten nicht gefunden',
        "server_version": "Flexi-Serverversion ist {version}",
        "client_version": "Client-Version ist {version}",
        "no_server": "keine laufende Flexi-Instanz erreichbar",
        "interrupted": "abgebrochen",
        "bye_hint": "Mit Strg + d oder /bye beenden.",
        "cleared": "Sitzungsverlauf gelöscht",
        "system_set": "Systemnachricht gesetzt.",
        "parameter_set": "Parameter '{name}' auf '{value}' gesetzt",
        "verbose_on": "Modus 'verbose' aktiviert.",
        "quiet_on": "Modus 'quiet' aktiviert.",
        "format_json": "Ausgabeformat 'json' gesetzt.",
        "format_off": "Ausgabeformat zurückgesetzt.",
        "wordwrap_on": "Zeilenumbruch aktiviert.",
        "wordwrap_off": "Zeilenumbruch deaktiviert.",
        "loading": "Lade Modell '{name}'",
        "unknown_command": "Unbekannter Befehl '{command}'. Hilfe mit /?",
        "usage_set": "Aufruf: /set system <Text> | parameter <Name> <Wert> | verbose | quiet | format json | noformat | wordwrap | nowordwrap",
        "usage_show": "Aufruf: /show info | license | modelfile | parameters | system | template",
        "usage_load": "Aufruf: /load <Modell>",
        "nothing_to_show": "Für dieses Modell ist kein(e) {what} angegeben.",
        "repl_help": (
            "Verfügbare Befehle:\n"
            "  /set            Sitzungsvariablen setzen (system, parameter, verbose, format, wordwrap)\n"
            "  /show           Modellinformationen anzeigen\n"
            "  /load <Modell>  Ein anderes Modell laden\n"
            "  /clear          Sitzungsverlauf löschen\n"
            "  /bye            Beenden\n"
            "  /?, /help       Hilfe zu einem Befehl\n"
            "\n"
            'Mit """ beginnt eine mehrzeilige Nachricht.'
        ),
        "gathering": "sammle Modellbestandteile",
        "copying": "kopiere Datei {digest}",
        "hashing": "berechne Prüfsumme von {name}",
        "using_blob": "verwende vorhandene Schicht {digest}",
        "file_not_found": "Datei nicht gefunden: {path}",
        "no_modelfile": "kein Modelfile unter {path} gefunden; nutze --file",
        "directory_from": "{path} ist ein Verzeichnis; nur GGUF-Dateien können importiert werden",
        "modelfile_error": "Modelfile Zeile {line}: {problem}",
        "modelfile_unknown": 'unbekannte Anweisung "{word}" (erlaubt: FROM, TEMPLATE, SYSTEM, PARAMETER, LICENSE, ADAPTER, MESSAGE)',
        "modelfile_missing_value": "Wert für {word} fehlt",
        "modelfile_unterminated": 'nicht geschlossene """-Zeichenkette',
        "modelfile_trailing": 'unerwarteter Text nach schließendem """',
        "modelfile_no_from": "das Modelfile enthält keine FROM-Anweisung",
        "modelfile_bad_message": 'MESSAGE braucht Rolle und Inhalt, z. B. MESSAGE user "Hallo"',
        "show_one_flag": "nur eine der Optionen --modelfile, --parameters, --template, --system, --license angeben",
        "bad_keep_alive": 'ungültige Dauer "{value}"; z. B. "5m", "1h", "30s", 0 oder -1',
        "bad_format": 'nicht unterstütztes Format "{value}"; nur "json" ist möglich',
        "no_models": "keine Modelle gefunden; versuche `flexi pull smollm2:135m`",
    },
}


def language(env: dict[str, str] | None = None) -> str:
    """"de" or "en", from the first of LC_ALL, LC_MESSAGES, LANG that is set."""
    env = os.environ if env is None else env
    for key in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(key)
        if value:
            return "de" if value.lower().startswith("de") else "en"
    return "en"


def t(key: str, **values: object) -> str:
    """The message `key` in the user's language, formatted with `values`."""
    table = MESSAGES[language()]
    template = table.get(key) or MESSAGES["en"][key]
    return template.format(**values) if values else template
