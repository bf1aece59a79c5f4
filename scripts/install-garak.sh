#!/usr/bin/env bash
# Install garak (NVIDIA's LLM vulnerability scanner) for `flexi safety` into its own virtual environment.
#
# garak's declared dependencies (torch, transformers, langchain, litellm, cloud SDKs) must not enter Flexi's
# environment and are not needed by Flexi's probes, so `flexi safety --install` creates a venv and installs garak
# with --no-deps plus only what the probes import (the list lives in flexi/bench/garak.py). About 30 s and 0.5 GB
# on a fresh machine; with pip's cache much faster.
#
#   scripts/install-garak.sh            # → ~/.cache/flexi/garak-venv (where flexi safety looks by default)
#   scripts/install-garak.sh DIR        # → DIR; then run flexi safety with --garak DIR or FLEXI_GARAK=DIR
set -euo pipefail
exec "${PYTHON:-python3}" -m flexi safety --install ${1:+--garak "$1"}
