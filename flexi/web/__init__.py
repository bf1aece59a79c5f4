"""Flexi's browser interface: the chat, course assistants and admin pages at `/`.

Everything the browser loads ships inside this package (`static/`), so a campus
install makes no third-party request: no CDN, no web fonts, no analytics.
"""
