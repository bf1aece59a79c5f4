"""Wire format between server and runner: one JSON object per line over a Unix socket.

Server → runner: {"op": "generate"|"embed"|"cancel"|"tokenize", "id": int, ...}
Runner → server: {"id": int, "ev": "prefill"|"text"|"done"|"error"|"result", ...}
("prefill": a slot took the prompt, with its `prompt_tokens`; sent before the prefill runs, so
the server can bill a request whose client leaves before the first token.)
Many requests are multiplexed over one connection by `id`.
"""

from __future__ import annotations

import json
from typing import Any

READY_PREFIX = "FLEXI-RUNNER-READY "
MAX_LINE = 64 * 1024 * 1024  # embeddings of big batches are long lines


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line)
