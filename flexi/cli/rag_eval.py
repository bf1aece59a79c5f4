"""`flexi rag eval`: measure retrieval (recall@k, MRR) and, with --answers, citation accuracy and
groundedness of answers, for several configurations side by side; writes Markdown, JSON and a chart.

The evaluation runs in this process (`flexi.rag.eval_run`); the server is used only as the engine: its
`/api/embed` embeds chunks and questions in batches, and its `/api/chat` writes the answers. So the
numbers describe the models the server really serves, and a teacher can evaluate their own documents
(`--questions FILE --docs DIR`) before uploading them to an assistant.
"""

from __future__ import annotations

import functools
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, List, Optional, TypeVar

import typer

from flexi import __version__
from flexi.cli.client import Client, CLIError
from flexi.cli.ui import console
from flexi.i18n import t
from flexi.rag.eval_report import markdown_table, write
from flexi.rag.eval_run import (
    MODES,
    DocumentFailed,
    Settings,
    combined,
    evaluate,
    limited,
)
from flexi.rag.evalcorpus import (
    SHIPPED_LANGUAGES,
    EvalSet,
    EvalSetError,
    load_set,
    shipped_set,
)
from flexi.rag.fusion import DEFAULT_CANDIDATES, RRF_K
from flexi.store import DEFAULT_EMBED_MODEL_NAME

F = TypeVar("F", bound=Callable[..., Any])
EMBED_BATCH = 32
ANSWER_TOKENS = 160


def _errors(func: F) -> F:
    """CLIError → "Error: …" and exit 1, Ctrl-C → exit 130 (as in flexi.cli.main, without importing it)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CLIError as exc:
            typer.echo(t("error", message=exc.message), err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def server_embedder(client: Client, model: str, batch: int = EMBED_BATCH) -> Callable[[list[str]], list[list[float]]]:
    """`embed(texts)` through the server's /api/embed, `batch` inputs per request."""

    def embed(texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), batch):
            part = texts[start:start + batch]
            body = client.request("POST", "/api/embed", {"model": model, "input": part, "truncate": True})
            got = body.get("embeddings") if isinstance(body, dict) else None
            if not isinstance(got, list) or len(got) != len(part):
                raise CLIError(t("rag_eval_bad_embedding", model=model))
            vectors += got
        return vectors

    return embed


def server_chat(client: Client, model: str, max_tokens: int = ANSWER_TOKENS) -> Callable[[list[dict[str, Any]]], str]:
    """`chat(messages)` through the server's /api/chat, not streamed, deterministic, at most `max_tokens`."""

    def chat(messages: list[dict[str, Any]]) -> str:
        body = client.request("POST", "/api/chat", {"model": model, "messages": messages, "stream": False,
                                                    "options": {"temperature": 0, "num_predict": max_tokens}})
        return str((body.get("message") or {}).get("content") or "")

    return chat


def _sizes(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise CLIError(t("rag_eval_bad_sizes", value=value)) from None
    if not sizes or any(s < 16 for s in sizes):
        raise CLIError(t("rag_eval_bad_sizes", value=value))
    return tuple(dict.fromkeys(sizes))


def _modes(value: str) -> tuple[str, ...]:
    modes = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    for mode in modes or ("",):
        if mode not in MODES:
            raise CLIError(t("rag_eval_bad_modes", value=mode))
    return modes


def _sets(which: str, questions: Path | None, docs: Path | None) -> list[EvalSet]:
    if (questions is None) != (docs is None):
        raise CLIError(t("rag_eval_questions_docs"))
    try:
        if questions is not None and docs is not None:
            return [load_set(questions, docs)]
        if which == "all":
            return [shipped_set(lang) for lang in SHIPPED_LANGUAGES]
        if which in SHIPPED_LANGUAGES:
            return [shipped_set(which)]
    except EvalSetError as exc:
        raise CLIError(t("rag_eval_set_error", detail=str(exc))) from None
    raise CLIError(t("rag_eval_bad_set", value=which))


def machine() -> str:
    """The CPU model and count (numbers from a laptop and a server are not comparable), and Python."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}"


@_errors
def eval_command(
    set_: str = typer.Option("all", "--set", help="Shipped question set: en, de or all."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="Your own question file (JSON; see docs)."),
    docs: Optional[Path] = typer.Option(None, "--docs", help="Folder with the documents your questions refer to."),
    k: int = typer.Option(5, "--k", min=1, max=50, help="Passages retrieved per question (recall@k, MRR@k)."),
    chunk_sizes: str = typer.Option("100,200", "--chunk-sizes", help="Chunk sizes in tokens, comma-separated."),
    modes: str = typer.Option(",".join(MODES), "--modes", help="Retrieval modes: lexical, dense, hybrid."),
    embedding_model: Optional[List[str]] = typer.Option(None, "--embedding-model", "-e",
                                                        help="Embedding model on the server (repeatable)."),
    answers: Optional[str] = typer.Option(None, "--answers", help="Chat model that answers (citation accuracy, groundedness)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N questions of each set."),
    answer_limit: Optional[int] = typer.Option(None, "--answer-limit", min=1,
                                               help="With --answers: answer only the first N questions of each set."),
    out: Path = typer.Option(Path("rag-eval"), "--out", help="Folder for the report files."),
) -> None:
    """Evaluate retrieval and answers on a question set: recall@k, MRR, citation accuracy, groundedness."""
    sets = [limited(s, limit) for s in _sets(set_, questions, docs)]
    answered = min((n for n in (limit, answer_limit) if n is not None), default=None)
    settings = Settings(k=k, chunk_sizes=_sizes(chunk_sizes), modes=_modes(modes), answer_limit=answered)
    models = list(dict.fromkeys(embedding_model or [DEFAULT_EMBED_MODEL_NAME]))
    err = console(stderr=True)
    started = time.monotonic()
    with Client() as client:
        embedders = {m: server_embedder(client, m) for m in models} if set(settings.modes) - {"lexical"} else {}
        chat = server_chat(client, answers) if answers else None
        try:
            rows = evaluate(sets, embedders, settings, chat=chat,
                            progress=lambda key, **values: err.print(t(key, **values)))
        except DocumentFailed as exc:
            raise CLIError(t("rag_eval_parse_error", name=exc.name, detail=exc.error.message())) from None
    rows = rows + combined(rows)
    meta = {
        "command": "flexi rag eval " + shlex.join(sys.argv[3:] if sys.argv[1:3] == ["rag", "eval"] else []),
        "flexi": __version__,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "duration_s": round(time.monotonic() - started, 1),
        "sets": ", ".join(f"{s.name} ({len(s.questions)} questions, {len(s.documents)} documents)" for s in sets),
        "k": k,
        "fusion": f"reciprocal rank fusion, k = {RRF_K}, {DEFAULT_CANDIDATES} candidates from each list",
        "answers": (f"{answers}: hybrid rows, the first {answered or 'all'} questions of each set, "
                    f"at most {ANSWER_TOKENS} tokens, temperature 0") if answers else "none",
        "reranker": "none (Flexi has no reranker stage yet)",
    }
    paths = write(out, rows, meta)
    console().print(markdown_table(rows), end="")
    err.print(t("rag_eval_no_reranker"))
    err.print(t("rag_eval_written", markdown=paths["markdown"], json=paths["json"], chart=paths["chart"]))


def register(rag_app: typer.Typer) -> None:
    """Add `eval` to the `flexi rag` command group."""
    rag_app.command("eval")(eval_command)
