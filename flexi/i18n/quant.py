"""Texts of `flexi quantize`, `flexi perplexity` and `flexi quant-report`, in German and English.
quant.md itself stays in English (like bench.md) except the recommendation, which it carries in both."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    # flexi quantize
    "quant_start": {"en": "Quantizing {source} ({from_type}) to {quant} as {name} …",
                    "de": "Quantisiere {source} ({from_type}) nach {quant} als {name} …"},
    "quant_bad_type": {"en": "unknown quantization type {value!r}; offered: {offered}",
                       "de": "unbekannter Quantisierungstyp {value!r}; angeboten: {offered}"},
    "quant_unknown_model": {"en": "model {name} is not installed in this model store (FLEXI_HOME)",
                            "de": "Modell {name} ist in diesem Modellspeicher (FLEXI_HOME) nicht installiert"},
    "quant_exists": {"en": "model {name} already exists; choose another --name, or --replace",
                     "de": "Modell {name} gibt es schon; anderen --name wählen oder --replace"},
    "quant_done": {"en": "Created {name}: {quant}, {size} MiB, {bpw} bits per weight ({seconds} s)",
                   "de": "{name} angelegt: {quant}, {size} MiB, {bpw} Bit pro Gewicht ({seconds} s)"},
    "quant_fallbacks": {
        "en": "{count} tensors could not use the requested type (rows not a multiple of the block size) and fell back: {detail}",
        "de": "{count} Tensoren konnten den gewünschten Typ nicht nutzen (Zeilenlänge kein Vielfaches der Blockgröße) und wichen aus: {detail}",
    },
    "quant_requantized": {
        "en": "the source is already quantized ({from_type}): the new file inherits its rounding loss",
        "de": "die Quelle ist bereits quantisiert ({from_type}): die neue Datei erbt deren Rundungsverlust",
    },
    # flexi perplexity
    "ppl_text_missing": {"en": "text file not found: {path}", "de": "Textdatei nicht gefunden: {path}"},
    "ppl_text_unreadable": {"en": "cannot read text file {path}: {detail}",
                            "de": "Textdatei {path} nicht lesbar: {detail}"},
    "ppl_text_empty": {"en": "text file {path} is empty", "de": "Textdatei {path} ist leer"},
    "ppl_text_short": {
        "en": "text {text} has only {tokens} tokens, fewer than one window of --ctx {ctx}; use a longer text or a smaller --ctx",
        "de": "Text {text} hat nur {tokens} Token, weniger als ein Fenster von --ctx {ctx}; längeren Text oder kleineres --ctx wählen",
    },
    "ppl_ctx_small": {"en": "--ctx {ctx} is too small; use at least {min}",
                      "de": "--ctx {ctx} ist zu klein; mindestens {min}"},
    "ppl_segment_long": {
        "en": "a stretch of the text without spaces has {tokens} tokens, more than half a window of --ctx {ctx}",
        "de": "ein Textstück ohne Leerzeichen hat {tokens} Token, mehr als ein halbes Fenster von --ctx {ctx}",
    },
    "ppl_no_tokens": {"en": "no token could be scored", "de": "kein Token konnte bewertet werden"},
    "ppl_http_error": {"en": "the server refused {model} (HTTP {status}): {detail}",
                       "de": "der Server lehnte {model} ab (HTTP {status}): {detail}"},
    "ppl_no_logprobs": {
        "en": "the server returned no prompt logprobs; it needs /v1/completions with echo and logprobs (a current Flexi)",
        "de": "der Server lieferte keine Prompt-Logprobs; nötig ist /v1/completions mit echo und logprobs (ein aktuelles Flexi)",
    },
    "ppl_result": {
        "en": "{model} on {text}: perplexity {ppl} ({tokens} tokens in {windows} windows of {ctx}, {seconds} s)",
        "de": "{model} auf {text}: Perplexität {ppl} ({tokens} Token in {windows} Fenstern zu {ctx}, {seconds} s)",
    },
    # flexi quant-report
    "quant_report_target": {"en": "Quantization report of {models} on {url}", "de": "Quantisierungsbericht für {models} auf {url}"},
    "quant_report_step": {"en": "{model}: {step} …", "de": "{model}: {step} …"},
    "quant_report_failures": {"en": "{count} measurement(s) failed; see errors in quant.md",
                              "de": "{count} Messung(en) fehlgeschlagen; siehe Fehler in quant.md"},
    "quant_col_measure": {"en": "Measure", "de": "Messgröße"},
    "quant_row_model": {"en": "Model", "de": "Modell"},
    "quant_row_ppl_de": {"en": "Perplexity (German text)", "de": "Perplexität (deutscher Text)"},
    "quant_row_ppl_en": {"en": "Perplexity (English text)", "de": "Perplexität (englischer Text)"},
    "quant_row_size": {"en": "File size (MiB)", "de": "Dateigröße (MiB)"},
    "quant_row_bpw": {"en": "Bits per weight", "de": "Bit pro Gewicht"},
    "quant_row_ms_token": {"en": "ms/token (generation)", "de": "ms/Token (Generierung)"},
    "quant_row_tg": {"en": "Generation tokens/s", "de": "Generierung Token/s"},
    "quant_row_pp": {"en": "Prompt tokens/s", "de": "Prompt Token/s"},
    "quant_reason": {
        "en": ("Recommended: {model} ({quant}, {size} MiB). It is the smallest file whose perplexity stays within "
               "{tol} % of the best measured in both languages (German {de} vs. best {best_de}, English {en} vs. best "
               "{best_en}); below that a difference is hardly noticeable in use, while a smaller file leaves memory for "
               "more concurrent users and runs faster where memory bandwidth limits speed. Compared: {rest}."),
        "de": ("Empfohlen: {model} ({quant}, {size} MiB). Das ist die kleinste Datei, deren Perplexität in beiden "
               "Sprachen höchstens {tol} % über der besten gemessenen liegt (Deutsch {de} gegenüber bestens {best_de}, "
               "Englisch {en} gegenüber bestens {best_en}); darunter ist ein Unterschied im Gebrauch kaum zu merken, "
               "während eine kleinere Datei Speicher für mehr gleichzeitige Nutzende lässt und schneller läuft, wo die "
               "Speicherbandbreite das Tempo begrenzt. Verglichen mit: {rest}."),
    },
    "quant_reason_balanced": {
        "en": ("Recommended: {model} ({quant}, {size} MiB). No quantization is within {tol} % of the best in both "
               "languages at once (best German {best_de}, best English {best_en}); this one is closest in its worse "
               "language (German {de}, English {en}). Compared: {rest}."),
        "de": ("Empfohlen: {model} ({quant}, {size} MiB). Keine Quantisierung liegt in beiden Sprachen zugleich "
               "höchstens {tol} % über der besten (bestes Deutsch {best_de}, bestes Englisch {best_en}); diese kommt "
               "in ihrer schwächeren Sprache am nächsten heran (Deutsch {de}, Englisch {en}). Verglichen mit: {rest}."),
    },
    "quant_no_recommendation": {
        "en": "no recommendation: no model has a size and perplexities in both languages",
        "de": "keine Empfehlung: kein Modell hat eine Größe und Perplexitäten in beiden Sprachen",
    },
}
