"""Prompt work the API layer does before anything is scheduled: chat and Go templates (rendered
under a budget, off the event loop), output grammars from JSON schemas, tool-call parsing.
Nothing below the API (scheduler, runners) imports this package."""
