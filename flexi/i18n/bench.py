"""Messages of `flexi loadtest`, in German and English. Result files (results.md/json) stay in English
so that runs from different machines can be compared and parsed. `error`, `warning` and `interrupted`
come from `cli`."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "unreachable": {
        "en": "cannot reach {url} ({detail}); is the server running and is --url right?",
        "de": "{url} ist nicht erreichbar ({detail}); läuft der Server und stimmt --url?",
    },
    "bad_api": {
        "en": 'unknown --api "{value}"; use "ollama" or "openai"',
        "de": 'unbekannte --api "{value}"; erlaubt sind "ollama" und "openai"',
    },
    "bad_levels": {
        "en": 'invalid --levels "{value}"; use positive whole numbers separated by commas, e.g. 1,10,30',
        "de": 'ungültige --levels "{value}"; positive ganze Zahlen durch Kommas getrennt, z. B. 1,10,30',
    },
    "bad_positive": {
        "en": "{option} must be greater than 0 (got {value})",
        "de": "{option} muss größer als 0 sein (angegeben: {value})",
    },
    "bad_non_negative": {
        "en": "{option} must not be negative (got {value})",
        "de": "{option} darf nicht negativ sein (angegeben: {value})",
    },
    "bad_url": {"en": 'invalid --url "{value}"', "de": 'ungültige --url "{value}"'},
    "prompt_file_missing": {"en": "prompt file not found: {path}", "de": "Prompt-Datei nicht gefunden: {path}"},
    "prompt_file_unreadable": {
        "en": "cannot read prompt file {path}: {detail}",
        "de": "Prompt-Datei {path} nicht lesbar: {detail}",
    },
    "prompt_file_json": {
        "en": "prompt file {path}: invalid JSON ({detail})",
        "de": "Prompt-Datei {path}: ungültiges JSON ({detail})",
    },
    "prompt_file_json_shape": {
        "en": "prompt file {path}: the JSON must be a list of strings",
        "de": "Prompt-Datei {path}: das JSON muss eine Liste von Zeichenketten sein",
    },
    "prompt_file_empty": {
        "en": "prompt file {path} contains no prompts",
        "de": "Prompt-Datei {path} enthält keine Prompts",
    },
    "out_dir": {
        "en": "cannot create the output directory {path}: {detail}",
        "de": "Ausgabeverzeichnis {path} kann nicht angelegt werden: {detail}",
    },
    "target": {
        "en": "Load test of {url} ({api} API, model {model}): {prompts} prompts × levels {levels} × {reps} repetition(s) = {total} requests",
        "de": "Lasttest von {url} ({api}-API, Modell {model}): {prompts} Prompts × Stufen {levels} × {reps} Wiederholung(en) = {total} Anfragen",
    },
    "warmup": {"en": "Warm-up request (not counted) …", "de": "Aufwärmanfrage (wird nicht gezählt) …"},
    "warmup_failed": {
        "en": "the warm-up request failed ({detail}); continuing, failures will be recorded",
        "de": "die Aufwärmanfrage schlug fehl ({detail}); es geht weiter, Fehler werden protokolliert",
    },
    "progress": {
        "en": "prompt {prompt}/{prompts} · {level} concurrent · run {rep}/{reps}",
        "de": "Prompt {prompt}/{prompts} · {level} gleichzeitig · Lauf {rep}/{reps}",
    },
    "no_matplotlib": {
        "en": "matplotlib is not installed; skipping latency.png (pip install matplotlib)",
        "de": "matplotlib ist nicht installiert; latency.png wird übersprungen (pip install matplotlib)",
    },
    "chart_failed": {
        "en": "could not draw latency.png: {detail}",
        "de": "latency.png konnte nicht gezeichnet werden: {detail}",
    },
    "written": {"en": "Results written to {path}", "de": "Ergebnisse gespeichert in {path}"},
    "failures": {
        "en": "{count} of {total} requests failed or timed out (see results.json)",
        "de": "{count} von {total} Anfragen schlugen fehl oder überschritten die Zeit (siehe results.json)",
    },
    # flexi bench
    "bench_bad_streams": {
        "en": 'invalid --streams "{value}"; use positive whole numbers separated by commas, e.g. 1,4',
        "de": 'ungültige --streams "{value}"; positive ganze Zahlen durch Kommas getrennt, z. B. 1,4',
    },
    "bench_no_models": {"en": "name at least one model", "de": "mindestens ein Modell angeben"},
    "bench_target": {
        "en": "Benchmark of {url}: models {models} · streams {streams} · prompt ≈{prompt} tokens, {output} output tokens · {reps} repetition(s)",
        "de": "Benchmark von {url}: Modelle {models} · Streams {streams} · Prompt ≈{prompt} Tokens, {output} Ausgabe-Tokens · {reps} Wiederholung(en)",
    },
    "bench_progress": {
        "en": "{model} · {streams} stream(s) · run {rep}/{reps}",
        "de": "{model} · {streams} Stream(s) · Lauf {rep}/{reps}",
    },
    "bench_col_model": {"en": "MODEL", "de": "MODELL"},
    "bench_col_streams": {"en": "STREAMS", "de": "STREAMS"},
    "bench_col_pp": {"en": "PROMPT TOK/S", "de": "PROMPT TOK/S"},
    "bench_col_tg": {"en": "GEN TOK/S", "de": "GEN. TOK/S"},
    "bench_col_tg_total": {"en": "GEN TOK/S (ALL)", "de": "GEN. TOK/S (GESAMT)"},
    "bench_col_ttft": {"en": "TTFT MS", "de": "ERSTES TOKEN MS"},
    "bench_col_memory": {"en": "MEMORY", "de": "SPEICHER"},
    "bench_col_energy": {"en": "ENERGY/1K TOK", "de": "ENERGIE/1K TOK"},
    "bench_col_errors": {"en": "ERRORS", "de": "FEHLER"},
    "bench_not_measurable": {"en": "not measurable", "de": "nicht messbar"},
    "bench_failures": {
        "en": "{count} of {total} requests failed (see bench.json)",
        "de": "{count} von {total} Anfragen schlugen fehl (siehe bench.json)",
    },
    "reports_saved": {
        "en": "Stored with the model on {url}: {models}",
        "de": "Beim Modell auf {url} gespeichert: {models}",
    },
    "reports_nothing_to_save": {
        "en": "nothing to store: no model in this report was measured successfully",
        "de": "nichts zu speichern: kein Modell in diesem Bericht wurde erfolgreich gemessen",
    },
    "reports_bad_file": {
        "en": "{path} is not a report of flexi bench, eval, safety or quant-report ({detail})",
        "de": "{path} ist kein Bericht von flexi bench, eval, safety oder quant-report ({detail})",
    },
    "reports_deleted": {"en": "Report {id} deleted.", "de": "Bericht {id} gelöscht."},
    "reports_none": {"en": "No stored reports.", "de": "Keine gespeicherten Berichte."},
    "bench_ctx_too_small": {
        "en": "--ctx {ctx} is smaller than the prompt and output tokens ({need})",
        "de": "--ctx {ctx} ist kleiner als Prompt- und Ausgabe-Tokens zusammen ({need})",
    },
    "bench_ctx_ollama_only": {
        "en": "--ctx needs --api ollama (the OpenAI API has no context option; start the server with the context)",
        "de": "--ctx braucht --api ollama (die OpenAI-API hat keine Kontext-Option; den Server mit dem Kontext starten)",
    },
}
