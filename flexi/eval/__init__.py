"""`flexi eval`: quality benchmarks of models served by a Flexi server, through its own OpenAI-compatible API.

The scoring is EleutherAI's lm-evaluation-harness (`lm-eval`, optional extra `eval`); Flexi adds small
openly licensed task subsets for offline use (`tasks/`), a completions backend that needs no tokenizer
(`backend.py`), the score normalisation (`scores.py`) and a report shaped like the FLEXI paper's Table 4
(`report.py`). Nothing is sent anywhere but the Flexi server named by --url.
"""
