"""Texts of `flexi plan` (the memory planner), in German and English."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "plan_title": {"en": "Memory plan for {model}", "de": "Speicherplan für {model}"},
    "plan_model": {"en": "model", "de": "Modell"},
    "plan_model_value": {"en": "{arch}, {params} parameters, {quant}, file {size}",
                         "de": "{arch}, {params} Parameter, {quant}, Datei {size}"},
    "plan_request": {"en": "request", "de": "Anfrage"},
    "plan_request_value": {"en": "{users} concurrent users × {ctx} tokens of context, KV cache {cache}",
                           "de": "{users} gleichzeitige Nutzende × {ctx} Token Kontext, KV-Cache {cache}"},
    "plan_kv_shape": {"en": "KV cache per token", "de": "KV-Cache pro Token"},
    "plan_kv_shape_value": {
        "en": "2 × {layers} layers × {heads} KV heads × {dim} head dim × {bpe} B = {per_token}",
        "de": "2 × {layers} Schichten × {heads} KV-Köpfe × {dim} Kopfdimension × {bpe} B = {per_token}",
    },
    "plan_weights": {"en": "weights", "de": "Gewichte"},
    "plan_kv": {"en": "KV cache ({users} × {ctx} tokens)", "de": "KV-Cache ({users} × {ctx} Token)"},
    "plan_compute": {"en": "compute buffers and process", "de": "Rechenpuffer und Prozess"},
    "plan_embedder": {"en": "embedding context", "de": "Embedding-Kontext"},
    "plan_scoring": {"en": "prompt scoring (logprobs)", "de": "Prompt-Bewertung (Logprobs)"},
    "plan_total": {"en": "memory needed", "de": "Speicherbedarf"},
    "plan_device": {"en": "device", "de": "Gerät"},
    "plan_device_budget": {"en": "this host (FLEXI_MAX_MEMORY)", "de": "dieser Rechner (FLEXI_MAX_MEMORY)"},
    "plan_device_mem": {"en": "--mem", "de": "--mem"},
    "plan_fits": {"en": "fits", "de": "passt"},
    "plan_fits_yes": {"en": "yes ({free} left of {budget})", "de": "ja ({free} frei von {budget})"},
    "plan_fits_no": {"en": "NO ({short} short of {budget})", "de": "NEIN (es fehlen {short} von {budget})"},
    "plan_max_users": {"en": "most concurrent users at {ctx} tokens", "de": "höchstens gleichzeitige Nutzende bei {ctx} Token"},
    "plan_speed": {"en": "single-stream speed (upper bound)", "de": "Geschwindigkeit eines Datenstroms (Obergrenze)"},
    "plan_speed_value": {
        "en": "≤ {tps} tokens/s (bandwidth {bw} GB/s ÷ weights; real runners reach less)",
        "de": "≤ {tps} Token/s (Bandbreite {bw} GB/s ÷ Gewichte; echte Runner erreichen weniger)",
    },
    "plan_speed_unknown": {"en": "unknown (give --gpu or --bandwidth)", "de": "unbekannt (--gpu oder --bandwidth angeben)"},
    "plan_note_clamped": {
        "en": "note: the model was trained for {trained} tokens; the server clamps a context of {asked} to that, so did the plan",
        "de": "Hinweis: das Modell wurde für {trained} Token trainiert; der Server begrenzt einen Kontext von {asked} darauf, der Plan ebenso",
    },
    "plan_note_swa": {
        "en": "note: the model has sliding-window layers (window {window} tokens); the runner gives them full-size caches (llama.cpp swa_full), so they are counted at the full context",
        "de": "Hinweis: das Modell hat Schichten mit gleitendem Fenster ({window} Token); der Runner gibt ihnen volle Caches (llama.cpp swa_full), daher sind sie mit dem vollen Kontext gezählt",
    },
    "plan_note_cache_type": {
        "en": "note: the server's runners keep an f16 KV cache; {cache_type} shows what a quantized cache would need",
        "de": "Hinweis: die Runner des Servers halten den KV-Cache in f16; {cache_type} zeigt, was ein quantisierter Cache bräuchte",
    },
    "plan_note_slots": {
        "en": "note: one runner has at most {slots} slots (FLEXI_NUM_PARALLEL); more users need replicas (FLEXI_NUM_REPLICAS), each with its own weights and caches",
        "de": "Hinweis: ein Runner hat höchstens {slots} Slots (FLEXI_NUM_PARALLEL); mehr Nutzende brauchen Replikate (FLEXI_NUM_REPLICAS), jedes mit eigenen Gewichten und Caches",
    },
    "plan_unknown_gpu": {"en": "unknown GPU {name}; known: {known}", "de": "unbekannte GPU {name}; bekannt: {known}"},
    "plan_gpu_and_mem": {"en": "give either --gpu or --mem, not both", "de": "entweder --gpu oder --mem angeben, nicht beides"},
    "plan_bad_cache_type": {"en": "--cache-type must be f16, q8_0 or q4_0", "de": "--cache-type muss f16, q8_0 oder q4_0 sein"},
    "plan_reading_remote": {"en": "reading the GGUF header of {name} (ranged requests)…",
                            "de": "lese den GGUF-Kopf von {name} (Teilabrufe)…"},
}
