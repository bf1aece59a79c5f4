"""HTTP helpers every route layer shares (dialects, campus, web page, access middleware): error bodies
in each dialect's shape, body parsing, CSRF, content negotiation, security headers, app-state look-ups."""
