"""Question sets for `flexi rag eval`: the shipped German and English course corpus, or a teacher's own.

A question file is JSON: `{"language": "en", "questions": [{"id", "question", "gold": [{"document",
"page"} or {"document", "heading"}], "answer"?, "style"?}]}`; `document` is a file name in the documents
folder. The shipped corpus (`flexi/rag/evalset/`, CC BY 4.0) is Markdown, plain text with form-feed pages,
and slide decks kept as text (`*.slides.md`: slides separated by `---`, `# title` first, `Notes:` for
speaker notes) that are turned into real PPTX files here, so the eval goes through the PPTX loader and
its slide numbers like an uploaded deck would — without shipping binaries nobody can review.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flexi.rag.evaluation import GoldRef

SHIPPED_LANGUAGES = ("en", "de")
SLIDES_SUFFIX = ".slides.md"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    gold: tuple[GoldRef, ...]
    answer: str | None = None
    style: str | None = None  # "paraphrase" or "term" in the shipped set


@dataclass
class EvalSet:
    """Documents (file name, bytes) and the questions about them, in one language."""

    name: str
    language: str
    documents: list[tuple[str, bytes]]
    questions: list[Question] = field(default_factory=list)


class EvalSetError(ValueError):
    """A question file or documents folder that cannot be used; the message says what is wrong."""


def parse_questions(data: dict[str, Any]) -> tuple[str, list[Question]]:
    """(language, questions) of a decoded question file."""
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise EvalSetError("expected an object with a 'questions' list")
    out = []
    for i, item in enumerate(data["questions"], 1):
        try:
            gold = tuple(GoldRef(str(g["document"]), int(g["page"]) if g.get("page") is not None else None,
                                 str(g["heading"]) if g.get("heading") else None) for g in item["gold"])
            question = Question(str(item.get("id") or i), str(item["question"]), gold,
                                item.get("answer"), item.get("style"))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalSetError(f"question {i}: {type(exc).__name__} {exc}") from None
        if not question.gold:
            raise EvalSetError(f"question {question.id}: no gold document")
        out.append(question)
    return str(data.get("language") or "en"), out


def slides_to_pptx(source: str) -> bytes:
    """A PPTX deck from the slide text format described in the module docstring."""
    from pptx import Presentation

    deck = Presentation()
    for block in source.split("\n---\n"):
        lines = [line.rstrip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        title = lines[0].lstrip("#").strip()
        notes = [line[len("Notes:"):].strip() for line in lines[1:] if line.startswith("Notes:")]
        body = [line for line in lines[1:] if not line.startswith("Notes:")]
        slide = deck.slides.add_slide(deck.slide_layouts[1])  # "Title and Content"
        slide.shapes.title.text = title
        frame = slide.placeholders[1].text_frame
        frame.text = body[0] if body else ""
        for line in body[1:]:
            frame.add_paragraph().text = line
        if notes:
            slide.notes_slide.notes_text_frame.text = "\n".join(notes)
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def document_files(folder: Path) -> list[tuple[str, bytes]]:
    """Every file of `folder` (not recursive, sorted) as (name, bytes); slide sources become PPTX."""
    files = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name.endswith(SLIDES_SUFFIX):
            files.append((path.name[: -len(SLIDES_SUFFIX)] + ".pptx", slides_to_pptx(path.read_text("utf-8"))))
        else:
            files.append((path.name, path.read_bytes()))
    return files


def load_set(questions_file: Path, documents: Path, name: str | None = None) -> EvalSet:
    """A teacher's own set: a question file and the folder of the documents it refers to."""
    try:
        data = json.loads(questions_file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalSetError(f"{questions_file}: {exc}") from None
    language, questions = parse_questions(data)
    if not documents.is_dir():
        raise EvalSetError(f"{documents}: not a folder")
    files = document_files(documents)
    names = {n for n, _ in files}
    missing = sorted({g.document for q in questions for g in q.gold} - names)
    if missing:
        raise EvalSetError(f"documents named in the questions but not in {documents}: {', '.join(missing)}")
    return EvalSet(name or questions_file.stem, language, files, questions)


def shipped_folder() -> Path:
    return Path(str(resources.files("flexi.rag") / "evalset"))


def shipped_set(language: str) -> EvalSet:
    """The shipped course corpus and questions in `language` ("en" or "de")."""
    if language not in SHIPPED_LANGUAGES:
        raise EvalSetError(f"no shipped set {language!r}; choose one of {', '.join(SHIPPED_LANGUAGES)}")
    root = shipped_folder()
    return load_set(root / f"questions-{language}.json", root / language, name=language)
