"""Messages of the model commands of the CLI (`flexi run|pull|list|create|…`) and of `flexi rag add|list|rm|search`,
in German and English.

Table headers, progress lines sent by the server and `--verbose` statistics are not here: they stay in
Ollama's English form so scripts can parse them. `error`, `warning` and `interrupted` are shared by every
command-line tool (also `flexi loadtest`).
"""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "error": {"en": "Error: {message}", "de": "Fehler: {message}"},
    "warning": {"en": "Warning: {message}", "de": "Warnung: {message}"},
    "connect": {
        "en": "could not connect to Flexi at {url}; is `flexi serve` running?",
        "de": "Keine Verbindung zu Flexi unter {url}; läuft `flexi serve`?",
    },
    "timeout": {
        "en": "timed out talking to Flexi at {url}",
        "de": "Zeitüberschreitung bei der Verbindung zu Flexi unter {url}",
    },
    "transport": {
        "en": "connection to Flexi at {url} failed: {detail}",
        "de": "Verbindung zu Flexi unter {url} fehlgeschlagen: {detail}",
    },
    "http_status": {"en": "the server answered {status} {reason}", "de": "der Server antwortete mit {status} {reason}"},
    "bad_stream": {
        "en": "the server sent an invalid response line: {line}",
        "de": "der Server schickte eine ungültige Antwortzeile: {line}",
    },
    "copied": {"en": "copied '{src}' to '{dst}'", "de": "'{src}' nach '{dst}' kopiert"},
    "deleted": {"en": "deleted '{name}'", "de": "'{name}' gelöscht"},
    "stop_not_found": {
        "en": 'couldn\'t find model "{name}" to stop',
        "de": 'Modell "{name}" zum Anhalten nicht gefunden',
    },
    "server_version": {"en": "flexi version is {version}", "de": "Flexi-Serverversion ist {version}"},
    "client_version": {"en": "client version is {version}", "de": "Client-Version ist {version}"},
    "no_server": {
        "en": "could not connect to a running Flexi instance",
        "de": "keine laufende Flexi-Instanz erreichbar",
    },
    "interrupted": {"en": "interrupted", "de": "abgebrochen"},
    "bye_hint": {"en": "Use Ctrl + d or /bye to exit.", "de": "Mit Strg + d oder /bye beenden."},
    "cleared": {"en": "Cleared session context", "de": "Sitzungsverlauf gelöscht"},
    "system_set": {"en": "Set system message.", "de": "Systemnachricht gesetzt."},
    "parameter_set": {"en": "Set parameter '{name}' to '{value}'", "de": "Parameter '{name}' auf '{value}' gesetzt"},
    "verbose_on": {"en": "Set 'verbose' mode.", "de": "Modus 'verbose' aktiviert."},
    "quiet_on": {"en": "Set 'quiet' mode.", "de": "Modus 'quiet' aktiviert."},
    "format_json": {"en": "Set format to 'json' mode.", "de": "Ausgabeformat 'json' gesetzt."},
    "format_off": {"en": "Disabled format.", "de": "Ausgabeformat zurückgesetzt."},
    "wordwrap_on": {"en": "Set 'wordwrap' mode.", "de": "Zeilenumbruch aktiviert."},
    "wordwrap_off": {"en": "Set 'nowordwrap' mode.", "de": "Zeilenumbruch deaktiviert."},
    "loading": {"en": "Loading model '{name}'", "de": "Lade Modell '{name}'"},
    "unknown_command": {
        "en": "Unknown command '{command}'. Type /? for help",
        "de": "Unbekannter Befehl '{command}'. Hilfe mit /?",
    },
    "usage_set": {
        "en": "Usage: /set system <text> | parameter <name> <value> | verbose | quiet | format json | noformat | wordwrap | nowordwrap",
        "de": "Aufruf: /set system <Text> | parameter <Name> <Wert> | verbose | quiet | format json | noformat | wordwrap | nowordwrap",
    },
    "usage_show": {
        "en": "Usage: /show info | license | modelfile | parameters | system | template",
        "de": "Aufruf: /show info | license | modelfile | parameters | system | template",
    },
    "usage_load": {"en": "Usage: /load <model>", "de": "Aufruf: /load <Modell>"},
    "nothing_to_show": {
        "en": "No {what} was specified for this model.",
        "de": "Für dieses Modell ist kein(e) {what} angegeben.",
    },
    "repl_help": {
        "en": (
            'Available Commands:\n'
            '  /set            Set session variables (system, parameter, verbose, format, wordwrap)\n'
            '  /show           Show model information\n'
            '  /load <model>   Load a session or model\n'
            '  /clear          Clear session context\n'
            '  /bye            Exit\n'
            '  /?, /help       Help for a command\n'
            '\n'
            'Use """ to begin a multi-line message.'
        ),
        "de": (
            'Verfügbare Befehle:\n'
            '  /set            Sitzungsvariablen setzen (system, parameter, verbose, format, wordwrap)\n'
            '  /show           Modellinformationen anzeigen\n'
            '  /load <Modell>  Ein anderes Modell laden\n'
            '  /clear          Sitzungsverlauf löschen\n'
            '  /bye            Beenden\n'
            '  /?, /help       Hilfe zu einem Befehl\n'
            '\n'
            'Mit """ beginnt eine mehrzeilige Nachricht.'
        ),
    },
    "gathering": {"en": "gathering model components", "de": "sammle Modellbestandteile"},
    "copying": {"en": "copying file {digest}", "de": "kopiere Datei {digest}"},
    "hashing": {"en": "hashing {name}", "de": "berechne Prüfsumme von {name}"},
    "using_blob": {"en": "using existing layer {digest}", "de": "verwende vorhandene Schicht {digest}"},
    "file_not_found": {"en": "file not found: {path}", "de": "Datei nicht gefunden: {path}"},
    "no_modelfile": {
        "en": "no Modelfile found at {path}; use --file",
        "de": "kein Modelfile unter {path} gefunden; nutze --file",
    },
    "directory_from": {
        "en": "{path} is a directory without a safetensors model (config.json and *.safetensors); "
              "import a GGUF file or a BERT safetensors directory",
        "de": "{path} ist ein Verzeichnis ohne safetensors-Modell (config.json und *.safetensors); "
              "importiert werden GGUF-Dateien und BERT-Verzeichnisse im safetensors-Format",
    },
    "modelfile_error": {"en": "Modelfile line {line}: {problem}", "de": "Modelfile Zeile {line}: {problem}"},
    "modelfile_unknown": {
        "en": 'unknown instruction "{word}" (use FROM, TEMPLATE, SYSTEM, PARAMETER, LICENSE, ADAPTER, MESSAGE)',
        "de": 'unbekannte Anweisung "{word}" (erlaubt: FROM, TEMPLATE, SYSTEM, PARAMETER, LICENSE, ADAPTER, MESSAGE)',
    },
    "modelfile_missing_value": {"en": "missing value for {word}", "de": "Wert für {word} fehlt"},
    "modelfile_unterminated": {"en": 'unterminated """ string', "de": 'nicht geschlossene """-Zeichenkette'},
    "modelfile_trailing": {"en": 'unexpected text after closing """', "de": 'unerwarteter Text nach schließendem """'},
    "modelfile_no_from": {
        "en": "the Modelfile has no FROM instruction",
        "de": "das Modelfile enthält keine FROM-Anweisung",
    },
    "modelfile_bad_message": {
        "en": 'MESSAGE needs a role and content, e.g. MESSAGE user "Hello"',
        "de": 'MESSAGE braucht Rolle und Inhalt, z. B. MESSAGE user "Hallo"',
    },
    "show_one_flag": {
        "en": "use only one of --modelfile, --parameters, --template, --system, --license",
        "de": "nur eine der Optionen --modelfile, --parameters, --template, --system, --license angeben",
    },
    "bad_keep_alive": {
        "en": 'invalid duration "{value}"; use e.g. "5m", "1h", "30s", 0 or -1',
        "de": 'ungültige Dauer "{value}"; z. B. "5m", "1h", "30s", 0 oder -1',
    },
    "bad_format": {
        "en": 'unsupported format "{value}"; only "json" is supported',
        "de": 'nicht unterstütztes Format "{value}"; nur "json" ist möglich',
    },
    "no_models": {
        "en": "no models found; try `flexi pull smollm2:135m`",
        "de": "keine Modelle gefunden; versuche `flexi pull smollm2:135m`",
    },
    # --- flexi rag add|list|rm|search (course documents) ---------------------------------------------------
    "rag_nothing_to_add": {
        "en": "name at least one file, or a web page with --url",
        "de": "mindestens eine Datei oder mit --url eine Webseite angeben",
    },
    "rag_not_a_file": {"en": "not a file: {path}", "de": "keine Datei: {path}"},
    "rag_unreadable": {"en": "cannot read {path}: {detail}", "de": "{path} ist nicht lesbar: {detail}"},
    "rag_uploading": {"en": "uploading", "de": "hochladen"},
    "rag_processing": {"en": "processing", "de": "verarbeiten"},
    "rag_gone": {
        "en": "the document was deleted while it was being processed",
        "de": "das Dokument wurde während der Verarbeitung gelöscht",
    },
    "rag_wait_timeout": {
        "en": "documents still processing after {seconds} s; check later with `flexi rag list {slug}`",
        "de": "Dokumente nach {seconds} s noch in Verarbeitung; später mit `flexi rag list {slug}` nachsehen",
    },
    "rag_document_failed": {"en": "{name}: {error}", "de": "{name}: {error}"},
    "rag_no_reason": {"en": "processing failed", "de": "Verarbeitung fehlgeschlagen"},
    "rag_no_document": {
        "en": "assistant {slug} has no document {id}; see `flexi rag list {slug}`",
        "de": "Assistent {slug} hat kein Dokument {id}; siehe `flexi rag list {slug}`",
    },
    "rag_removed": {"en": "removed '{name}' ({id})", "de": "'{name}' ({id}) entfernt"},
    "rag_reembedding": {
        "en": "embedding {count} document(s) again with the current model in the background; `flexi rag list` shows when",
        "de": "{count} Dokument(e) werden im Hintergrund mit dem aktuellen Modell neu eingebettet; `flexi rag list` zeigt den Stand",
    },
    "rag_nothing_to_reembed": {
        "en": "every document already has vectors of the current embedding model",
        "de": "alle Dokumente haben schon Vektoren des aktuellen Einbettungsmodells",
    },
    "rag_no_results": {
        "en": "no passage found (only documents with status ready are searched)",
        "de": "keine Textstelle gefunden (durchsucht werden nur Dokumente mit Status ready)",
    },
    # --- flexi backend add|list|rm|check ---
    "backend_no_models": {"en": "name at least one model with --model", "de": "mindestens ein Modell mit --model angeben"},
    "backend_key_env_empty": {
        "en": "the environment variable {name} is not set or empty",
        "de": "die Umgebungsvariable {name} ist nicht gesetzt oder leer",
    },
    "backend_key_prompt": {"en": "API key of the backend", "de": "API-Schlüssel des Backends"},
    "backend_bad_kind": {"en": "unknown kind '{kind}'; one of: {kinds}", "de": "unbekannte Art '{kind}'; erlaubt: {kinds}"},
    "backend_external_consent": {
        "en": "{name} is external (prompts leave the university): add --enable to switch it on",
        "de": "{name} ist extern (Eingaben verlassen die Hochschule): zum Einschalten --enable angeben",
    },
    "backend_added": {
        "en": "added backend '{name}' serving {models}; in use now",
        "de": "Backend '{name}' für {models} hinzugefügt; ab sofort in Betrieb",
    },
    "backend_none": {"en": "no remote backends", "de": "keine entfernten Backends"},
    "backend_removed": {
        "en": "removed backend '{name}'; requests it is running finish first",
        "de": "Backend '{name}' entfernt; laufende Anfragen werden noch beendet",
    },
    "backend_reachable": {"en": "{name} is reachable ({ms} ms)", "de": "{name} ist erreichbar ({ms} ms)"},
    "backend_lists": {"en": "models offered: {models}", "de": "angebotene Modelle: {models}"},
    "backend_missing": {
        "en": "configured but not offered by the engine: {models}",
        "de": "konfiguriert, aber von der Engine nicht angeboten: {models}",
    },
    "backend_unreachable": {"en": "{name} is unreachable: {detail}", "de": "{name} ist nicht erreichbar: {detail}"},
}
