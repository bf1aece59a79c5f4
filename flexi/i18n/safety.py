"""Messages of `flexi safety`, in German and English. safety.md/json stay in English (like bench.md) so runs from
different machines compare; `error`, `warning` and `interrupted` come from `cli`, `unreachable` from `bench`."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "safety_garak_missing": {
        "en": "garak is not usable at {path} ({detail}). flexi safety runs garak in its own virtual environment; "
              "install it with: {hint}",
        "de": "garak ist unter {path} nicht nutzbar ({detail}). flexi safety startet garak in einer eigenen "
              "virtuellen Umgebung; installieren mit: {hint}",
    },
    "safety_garak_failed": {
        "en": "garak stopped with exit code {code}: {detail} (full output: {log})",
        "de": "garak brach mit Exit-Code {code} ab: {detail} (vollständige Ausgabe: {log})",
    },
    "safety_garak_timeout": {
        "en": "garak did not finish within {seconds} s (output so far: {log})",
        "de": "garak wurde nicht innerhalb von {seconds} s fertig (bisherige Ausgabe: {log})",
    },
    "safety_garak_no_report": {
        "en": "garak wrote no report: {detail} (full output: {log})",
        "de": "garak hat keinen Bericht geschrieben: {detail} (vollständige Ausgabe: {log})",
    },
    "safety_install_failed": {
        "en": "installing garak failed at `{command}`: {detail}",
        "de": "Die Installation von garak schlug bei `{command}` fehl: {detail}",
    },
    "safety_installing": {
        "en": "Installing garak {version} into {venv} (only the modules Flexi's probes need) …",
        "de": "Installiere garak {version} nach {venv} (nur die Module, die Flexis Proben brauchen) …",
    },
    "safety_installed": {
        "en": "garak {version} is ready: {python}",
        "de": "garak {version} ist bereit: {python}",
    },
    "safety_bad_probes": {
        "en": 'invalid --probes "{value}"; use quick, default or garak probe names such as dan.DanInTheWild,encoding',
        "de": 'ungültige --probes "{value}"; erlaubt sind quick, default oder garak-Proben wie dan.DanInTheWild,encoding',
    },
    "safety_refused": {
        "en": "{url} refused the request (HTTP {status}); pass a key with --api-key or FLEXI_API_KEY",
        "de": "{url} hat die Anfrage abgelehnt (HTTP {status}); Schlüssel mit --api-key oder FLEXI_API_KEY angeben",
    },
    "safety_target": {
        "en": "Safety probes (garak {version}) against {url}: models {models} · probe set {set} ({count} probes, "
              "at most {cap} prompts each)",
        "de": "Sicherheitsproben (garak {version}) gegen {url}: Modelle {models} · Probensatz {set} ({count} Proben, "
              "höchstens {cap} Prompts je Probe)",
    },
    "safety_progress": {"en": "{model}: garak is running …", "de": "{model}: garak läuft …"},
    "safety_probe_done": {
        "en": "{model} · {probe}: {passed}/{total} passed ({unanswered} unanswered)",
        "de": "{model} · {probe}: {passed}/{total} bestanden ({unanswered} unbeantwortet)",
    },
    "safety_col_model": {"en": "MODEL", "de": "MODELL"},
    "safety_col_overall": {"en": "PASSED", "de": "BESTANDEN"},
    "safety_col_jailbreak": {"en": "JAILBREAK", "de": "JAILBREAK"},
    "safety_col_toxicity": {"en": "TOXICITY", "de": "TOXIZITÄT"},
    "safety_col_encoding": {"en": "ENCODING", "de": "KODIERUNG"},
    "safety_col_prompt_leak": {"en": "PROMPT LEAK", "de": "PROMPT-LECK"},
    "safety_col_injection": {"en": "INJECTION", "de": "INJEKTION"},
    "safety_col_other": {"en": "OTHER", "de": "SONSTIGE"},
    "safety_col_error": {"en": "ERROR", "de": "FEHLER"},
    "safety_failures": {
        "en": "{count} of {total} models could not be tested (see safety.json)",
        "de": "{count} von {total} Modellen konnten nicht geprüft werden (siehe safety.json)",
    },
}
