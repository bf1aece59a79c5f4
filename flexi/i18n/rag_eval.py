"""Messages of `flexi rag eval` (issue 13, item 7), in German and English."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "rag_eval_bad_set": {
        "en": "unknown question set '{value}'; use en, de or all, or --questions FILE --docs DIR",
        "de": "Unbekannter Fragensatz '{value}'; erlaubt sind en, de oder all, oder --questions DATEI --docs ORDNER",
    },
    "rag_eval_questions_docs": {
        "en": "--questions and --docs belong together: give both, or neither",
        "de": "--questions und --docs gehören zusammen: Geben Sie beide an oder keines",
    },
    "rag_eval_bad_modes": {
        "en": "unknown retrieval mode '{value}'; use lexical, dense and/or hybrid",
        "de": "Unbekannter Suchmodus '{value}'; erlaubt sind lexical, dense und/oder hybrid",
    },
    "rag_eval_bad_sizes": {
        "en": "--chunk-sizes wants whole numbers of at least 16 tokens, separated by commas (e.g. 100,200), not '{value}'",
        "de": "--chunk-sizes erwartet ganze Zahlen ab 16 Tokens, durch Kommas getrennt (z. B. 100,200), nicht '{value}'",
    },
    "rag_eval_set_error": {
        "en": "the question set cannot be used: {detail}",
        "de": "Der Fragensatz ist nicht verwendbar: {detail}",
    },
    "rag_eval_parse_error": {
        "en": "document '{name}' could not be read: {detail}",
        "de": "Dokument '{name}' konnte nicht gelesen werden: {detail}",
    },
    "rag_eval_bad_embedding": {
        "en": "the server returned no usable embeddings from '{model}'; is it an embedding model?",
        "de": "Der Server lieferte keine brauchbaren Embeddings von '{model}'; ist es ein Embedding-Modell?",
    },
    "rag_eval_parsing": {
        "en": "{set}: reading {documents} documents",
        "de": "{set}: {documents} Dokumente werden gelesen",
    },
    "rag_eval_embedding": {
        "en": "{set}: chunks of {tokens} tokens, {model}: embedding {chunks} chunks and {questions} questions",
        "de": "{set}: Chunks mit {tokens} Tokens, {model}: {chunks} Chunks und {questions} Fragen werden eingebettet",
    },
    "rag_eval_answering": {
        "en": "{set}: chunks of {tokens} tokens, {model}: answering {questions} questions",
        "de": "{set}: Chunks mit {tokens} Tokens, {model}: {questions} Fragen werden beantwortet",
    },
    "rag_eval_written": {
        "en": "Report written: {markdown}, {json}, {chart}",
        "de": "Bericht geschrieben: {markdown}, {json}, {chart}",
    },
    "rag_eval_no_reranker": {
        "en": "Flexi has no reranker stage yet: configurations differ by chunk size, retrieval mode and embedding model.",
        "de": "Flexi hat noch keine Reranker-Stufe: Die Konfigurationen unterscheiden sich in Chunkgröße, Suchmodus und Embedding-Modell.",
    },
}
