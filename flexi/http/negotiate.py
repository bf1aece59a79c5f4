"""Content negotiation for `/`: browsers get the web page, every other client Ollama's
"Ollama is running" (Ollama clients probe `/` and compare that text)."""

from __future__ import annotations


def wants_html(accept: str | None) -> bool:
    """True when the client asks for a page: browsers send `text/html`; curl, SDKs and Ollama clients do not."""
    if not accept:
        return False
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() in ("text/html", "application/xhtml+xml"):
            compact = params.replace(" ", "")
            return not (compact.endswith("q=0") or "q=0;" in compact or compact.endswith("q=0.0"))
    return False
