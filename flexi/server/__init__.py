"""The HTTP server: app factory, lifespan state, request guards."""
