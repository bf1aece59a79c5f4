"""The load-test prompts of the FLEXI paper, Appendix A, and reading prompt files.

The five default prompts are copied verbatim from the paper's "Server Load Results"
table (including its typographic apostrophe in "I’d"). A prompt file holds either a
JSON list of strings or plain text with one prompt per blank-line-separated block.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from flexi.i18n import t

PAPER_PROMPTS: tuple[str, ...] = (
    "Write a step-by-step guide on how to bake a chocolate cake from scratch.",
    "Develop a python function that solves the following problem, sudoku game",
    "Create a dialogue between two characters that discusses economic crisis",
    "In a forest, there are brave lions living there. Please continue the story.",
    "I’d like to book a flight for 4 to Seattle in U.S.",
)


class PromptFileError(ValueError):
    """The prompt file is missing, empty or malformed; `str()` is a user-facing message."""


_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_NOT_JSON = object()


def parse_prompts(text: str, source: str = "<text>", *, as_json: bool | None = None) -> list[str]:
    """Prompts from a file's text: a JSON list of strings, else blank-line-separated blocks.

    `as_json=None` guesses: text starting with "[" that parses as JSON is JSON, anything
    else (also "[Note] …" prose) is plain text. `as_json=True` (a .json file) insists.
    """
    stripped = text.lstrip("\ufeff").strip()
    data: object = _NOT_JSON
    if as_json or (as_json is None and stripped.startswith("[")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            if as_json:
                raise PromptFileError(t("prompt_file_json", path=source,
                                        detail=f"{exc.msg}, line {exc.lineno}")) from None
    if data is not _NOT_JSON:
        if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
            raise PromptFileError(t("prompt_file_json_shape", path=source))
        prompts = [p.strip() for p in data if p.strip()]
    else:
        normalized = stripped.replace("\r\n", "\n").replace("\r", "\n")
        prompts = [block.strip() for block in _BLANK_LINE.split(normalized) if block.strip()]
    if not prompts:
        raise PromptFileError(t("prompt_file_empty", path=source))
    return prompts


def load_prompts(path: Path) -> list[str]:
    """Read and parse a prompt file; PromptFileError when it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(t("prompt_file_missing", path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(t("prompt_file_unreadable", path=path, detail=exc)) from None
    return parse_prompts(text, str(path), as_json=True if path.suffix.lower() == ".json" else None)
