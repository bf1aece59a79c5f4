"""Texts of `flexi eval` (quality benchmarks through lm-evaluation-harness), in German and English. eval.md and
eval.json stay in English; `error`, `warning`, `written`, `unreachable` and `bad_positive` come from `cli`/`bench`."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "eval_no_models": {"en": "name at least one model", "de": "mindestens ein Modell angeben"},
    "eval_no_tasks": {"en": "--tasks names no task", "de": "--tasks nennt keine Aufgabe"},
    "eval_not_installed": {
        "en": "flexi eval needs lm-evaluation-harness: pip install 'flexi[eval]' ({detail})",
        "de": "flexi eval braucht lm-evaluation-harness: pip install 'flexi[eval]' ({detail})",
    },
    "eval_unknown_task": {
        "en": "unknown task(s): {names}. Shipped (offline): {shipped}; any other lm-eval task name works only "
              "when its dataset can be downloaded from Hugging Face or is in the local cache",
        "de": "unbekannte Aufgabe(n): {names}. Mitgeliefert (offline): {shipped}; andere lm-eval-Aufgaben gehen "
              "nur, wenn ihr Datensatz von Hugging Face geladen werden kann oder im lokalen Cache liegt",
    },
    "eval_task_load_failed": {
        "en": "cannot load the data of task {name} (offline, only the shipped flexi_* tasks work): {detail}",
        "de": "Daten der Aufgabe {name} nicht ladbar (offline gehen nur die mitgelieferten flexi_*-Aufgaben): {detail}",
    },
    "eval_model_not_found": {
        "en": "model(s) not found on the server: {names}. Installed: {available}",
        "de": "Modell(e) auf dem Server nicht gefunden: {names}. Installiert: {available}",
    },
    "eval_forbidden": {
        "en": "the server refused the request ({status}); pass a key with --api-key or FLEXI_API_KEY",
        "de": "der Server hat die Anfrage abgelehnt ({status}); Schlüssel mit --api-key oder FLEXI_API_KEY angeben",
    },
    "eval_request_failed": {"en": "request to {url} failed: {detail}", "de": "Anfrage an {url} gescheitert: {detail}"},
    "eval_logprobs_refused": {
        "en": "the server refused prompt log-probabilities (/v1/completions with echo and logprobs; HTTP {status}): {detail}",
        "de": "der Server liefert keine Prompt-Log-Wahrscheinlichkeiten (/v1/completions mit echo und logprobs; "
              "HTTP {status}): {detail}",
    },
    "eval_no_logprobs": {
        "en": "the server's answer has no usable prompt log-probabilities ({detail}); multiple-choice tasks need "
              "/v1/completions with echo and logprobs",
        "de": "die Antwort des Servers enthält keine brauchbaren Prompt-Log-Wahrscheinlichkeiten ({detail}); "
              "Multiple-Choice-Aufgaben brauchen /v1/completions mit echo und logprobs",
    },
    "eval_rolling_unsupported": {
        "en": "perplexity tasks (loglikelihood_rolling) are not supported by flexi eval",
        "de": "Perplexitäts-Aufgaben (loglikelihood_rolling) unterstützt flexi eval nicht",
    },
    "eval_no_score": {"en": "lm-eval reported no score between 0 and 1", "de": "lm-eval hat keinen Wert zwischen 0 und 1 geliefert"},
    "eval_target": {
        "en": "Evaluating {models} on {url}: tasks {tasks}{limit}",
        "de": "Bewerte {models} auf {url}: Aufgaben {tasks}{limit}",
    },
    "eval_limit": {"en": " (at most {limit} items each)", "de": " (höchstens {limit} Einträge je Aufgabe)"},
    "eval_progress_task": {"en": "{model}: {task} …", "de": "{model}: {task} …"},
    "eval_progress_speed": {"en": "{model}: measuring tokens/s …", "de": "{model}: messe Token/s …"},
    "eval_task_failed": {"en": "{model}, {task}: {message}", "de": "{model}, {task}: {message}"},
    "eval_col_model": {"en": "MODEL", "de": "MODELL"},
    "eval_col_average": {"en": "AVERAGE", "de": "MITTEL"},
    "eval_col_average_de": {"en": "AVG (DE)", "de": "MITTEL (DE)"},
    "eval_col_tokens_per_s": {"en": "TOK/S", "de": "TOKEN/S"},
    "eval_col_errors": {"en": "FAILED", "de": "FEHLER"},
}
