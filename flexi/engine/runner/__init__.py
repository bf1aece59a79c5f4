"""The runner: one process per loaded model, driving llama.cpp with continuous batching.

The server never imports llama.cpp itself; it starts `python -m flexi.engine.runner`
and talks to it over a Unix socket (see `protocol.py`). A crash here costs the
in-flight requests of this one model, never the server.
"""
