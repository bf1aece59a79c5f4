"""`python -m flexi …` is the same as the `flexi` command."""

from flexi.cli.main import app

app()
