"""Texts of model aliases (`/admin/aliases`, `flexi alias`) and of the Azure OpenAI routes."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    # --- refusals of /admin/aliases (AdminError keys) ---
    "alias_bad_name": {"en": "'{name}' is not a valid model name ({reason})",
                       "de": "'{name}' ist kein gültiger Modellname ({reason})"},
    "alias_self": {"en": "alias '{name}' cannot point at itself", "de": "Alias '{name}' kann nicht auf sich selbst zeigen"},
    "alias_from_config": {
        "en": "alias '{name}' comes from the configuration file (config.toml) and cannot be changed here",
        "de": "Alias '{name}' stammt aus der Konfigurationsdatei (config.toml) und kann hier nicht geändert werden",
    },
    "alias_is_model": {"en": "'{name}' is a model already; an alias cannot hide it",
                       "de": "'{name}' ist bereits ein Modell; ein Alias kann es nicht verdecken"},
    "alias_chain": {
        "en": "alias chains are not allowed: '{name}' would point at the alias '{target}'; point it at a model",
        "de": "Alias-Ketten sind nicht erlaubt: '{name}' würde auf den Alias '{target}' zeigen; auf ein Modell zeigen lassen",
    },
    "alias_unknown_target": {"en": "target model '{target}' not found", "de": "Zielmodell '{target}' nicht gefunden"},
    "alias_exists": {"en": "an alias named '{name}' exists already", "de": "ein Alias namens '{name}' existiert bereits"},
    "alias_not_found": {"en": "alias '{name}' not found", "de": "Alias '{name}' nicht gefunden"},
    # --- flexi alias add|list|rm ---
    "alias_added": {"en": "alias '{name}' now stands for '{target}' (on every replica within seconds)",
                    "de": "Alias '{name}' steht jetzt für '{target}' (auf allen Replikaten binnen Sekunden)"},
    "alias_removed": {"en": "removed alias '{name}'", "de": "Alias '{name}' entfernt"},
    "alias_none": {"en": "no model aliases", "de": "keine Modell-Aliase"},
    # --- Azure OpenAI routes ---
    "azure_bad_deployment": {
        "en": "invalid deployment name {name}: use letters, digits, '.', '_', '-' and ':' only "
              "(no '/', '\\\\', '..', '%' or control characters)",
        "de": "ungültiger Deployment-Name {name}: nur Buchstaben, Ziffern, '.', '_', '-' und ':' verwenden "
              "(kein '/', '\\\\', '..', '%' und keine Steuerzeichen)",
    },
    "images_not_supported": {
        "en": "Flexi does not generate images. Turn off the image generation action of this AI provider "
              "(in Moodle: Site administration > General > AI > AI providers) or use another provider for it.",
        "de": "Flexi erzeugt keine Bilder. Die Aktion „Bild generieren“ dieses KI-Anbieters abschalten "
              "(in Moodle: Website-Administration > Allgemein > KI > KI-Anbieter) oder dafür einen anderen Anbieter nutzen.",
    },
    "azure_no_deployment": {
        "en": "The API deployment for this resource does not exist: no model or alias named {name} is available to you.",
        "de": "Das API-Deployment existiert nicht: Ihnen steht kein Modell und kein Alias namens {name} zur Verfügung.",
    },
}
