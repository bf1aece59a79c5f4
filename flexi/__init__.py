"""Flexi: open LLM infrastructure for universities and schools."""

__version__ = "0.1.0"
