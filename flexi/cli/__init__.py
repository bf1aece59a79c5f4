"""Command-line interface: `flexi serve`, `run`, `list`, `pull`, `create`, ..."""
