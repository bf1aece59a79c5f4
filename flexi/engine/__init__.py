"""Inference engine: internal request types, runner processes and their clients."""
