"""Messages of token log-probabilities (scoring, `logprobs`), in German and English."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "logprobs_remote": {
        "en": '"{model}" runs on a remote engine: token log-probabilities (logprobs, echo scoring) need a model '
              "that runs on this server",
        "de": '"{model}" läuft auf einer entfernten Engine: Token-Log-Wahrscheinlichkeiten (logprobs, echo-Bewertung) '
              "gibt es nur für Modelle, die auf diesem Server laufen",
    },
}
