"""`flexi rag add|list|rm|search`: the documents of a course assistant, from the shell.

Like the model commands these are HTTP clients of a running server (FLEXI_HOST, the key in
FLEXI_API_KEY) using the routes the web interface uses (`/assistants/{slug}/documents`,
`/assistants/{slug}/search`), so the server's rules apply unchanged: teachers of the course and
admins add and remove, whoever may use the assistant lists and searches. Uploads go in requests of
at most `MAX_FILES_PER_REQUEST` files; the server parses them in the background, so `add` polls the
list until each one is ready or failed and exits 1 if any failed. Table headers and statuses stay
English (scripts parse them); messages follow LC_ALL/LC_MESSAGES/LANG (texts: `flexi.i18n.cli`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flexi.cli.client import CLIError, Client
from flexi.cli.errors import handle_errors
from flexi.cli.format import human_bytes, human_time
from flexi.cli.ui import console, print_table
from flexi.i18n import t

MAX_FILES_PER_REQUEST = 10  # what the server accepts in one upload (flexi.rag.library.MAX_FILES_PER_UPLOAD)
FINISHED = ("ready", "failed")
POLL_SECONDS = 0.5
EXCERPT_CHARS = 160

rag_app = typer.Typer(help="Documents of course assistants: add, list, remove, search.", no_args_is_help=True)

SLUG_ARG = typer.Argument(..., help="The assistant's slug (see the web interface or GET /assistants).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
DOCUMENT_HEADERS = ["ID", "NAME", "STATUS", "PAGES", "CHUNKS", "ERROR"]


def _documents_path(slug: str) -> str:
    return f"/assistants/{slug}/documents"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _one_line(text: str | None, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _document_row(d: dict[str, Any]) -> list[str]:
    return [_cell(d.get("id")), _cell(d.get("name")), _cell(d.get("status")), _cell(d.get("pages")),
            _cell(d.get("chunks")), _one_line(d.get("error"), 200)]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _check_files(files: Sequence[Path]) -> None:
    """Every file must exist before the first one is sent, so a typo uploads nothing."""
    for path in files:
        if not path.exists():
            raise CLIError(t("file_not_found", path=path))
        if not path.is_file():
            raise CLIError(t("rag_not_a_file", path=path))


def _batches(files: Sequence[Path], size: int = MAX_FILES_PER_REQUEST) -> list[list[Path]]:
    return [list(files[i:i + size]) for i in range(0, len(files), size)]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console(stderr=True))


def _upload(client: Client, slug: str, files: Sequence[Path], urls: Sequence[str],
            progress: Progress) -> list[dict[str, Any]]:
    """Send the files (in requests of at most ten) and the URLs; the documents the server queued."""
    task = progress.add_task(t("rag_uploading"), total=len(files) + len(urls))
    queued: list[dict[str, Any]] = []
    for batch in _batches(files):
        try:
            answer = client.post_files(_documents_path(slug), "file", batch)
        except OSError as exc:
            raise CLIError(t("rag_unreadable", path=exc.filename or "", detail=exc.strerror or exc)) from None
        queued += answer.get("documents") or []
        progress.advance(task, len(batch))
    for url in urls:
        queued += client.request("POST", _documents_path(slug), {"url": url}).get("documents") or []
        progress.advance(task, 1)
    return queued


def _wait(client: Client, slug: str, queued: list[dict[str, Any]], progress: Progress,
          timeout: float) -> list[dict[str, Any]]:
    """Poll the list until every queued document is ready or failed; their final views, in upload order."""
    ids = list(dict.fromkeys(d["id"] for d in queued))  # the same file twice is one document
    task = progress.add_task(t("rag_processing"), total=len(ids))
    deadline = time.monotonic() + timeout
    while True:
        listed = {d["id"]: d for d in client.request("GET", _documents_path(slug)).get("documents") or []}
        views = [listed.get(i) or {"id": i, "name": _name_of(queued, i), "status": "failed", "error": t("rag_gone")}
                 for i in ids]
        done = sum(v.get("status") in FINISHED for v in views)
        progress.update(task, completed=done)
        if done == len(ids):
            return views
        if time.monotonic() > deadline:
            raise CLIError(t("rag_wait_timeout", seconds=int(timeout), slug=slug))
        time.sleep(POLL_SECONDS)


def _name_of(queued: list[dict[str, Any]], doc_id: int) -> str:
    return next((str(d.get("name", "")) for d in queued if d.get("id") == doc_id), "")


@rag_app.command("add")
@handle_errors
def add(slug: str = SLUG_ARG,
        files: Optional[List[Path]] = typer.Argument(None, help="PDF, DOCX, PPTX, ODT, HTML, Markdown or text files."),
        url: Optional[List[str]] = typer.Option(None, "--url", help="Ingest this web page (repeatable)."),
        no_wait: bool = typer.Option(False, "--no-wait", help="Return once the server has queued the documents."),
        timeout: float = typer.Option(1800, "--timeout", help="Seconds to wait for processing before giving up."),
        as_json: bool = JSON_OPTION) -> None:
    """Upload documents to a course assistant and wait until they are processed."""
    files, urls = list(files or []), list(url or [])
    if not files and not urls:
        raise CLIError(t("rag_nothing_to_add"))
    _check_files(files)
    with Client() as client, _progress() as progress:
        queued = _upload(client, slug, files, urls, progress)
        views = queued if no_wait else _wait(client, slug, queued, progress, timeout)
    if as_json:
        _print_json(views)
    else:
        print_table(DOCUMENT_HEADERS, [_document_row(v) for v in views])
    failed = [v for v in views if v.get("status") == "failed"]
    for v in failed:
        typer.echo(t("error", message=t("rag_document_failed", name=v.get("name", ""),
                                        error=v.get("error") or t("rag_no_reason"))), err=True)
    if failed:
        raise typer.Exit(1)


@rag_app.command("list")
@handle_errors
def list_documents(slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """List an assistant's documents with how far each got."""
    with Client() as client:
        docs = client.request("GET", _documents_path(slug)).get("documents") or []
    if as_json:
        _print_json(docs)
        return
    print_table(["ID", "NAME", "STATUS", "PAGES", "CHUNKS", "SIZE", "UPDATED", "ERROR"], [
        [*_document_row(d)[:5], human_bytes(d.get("size") or 0), human_time(d.get("updated_at"), ""),
         _one_line(d.get("error"), 200)] for d in docs])


@rag_app.command("rm")
@handle_errors
def rm(slug: str = SLUG_ARG,
       ids: List[int] = typer.Argument(..., help="Document ids (see `flexi rag list`).")) -> None:
    """Remove documents (with their passages) from an assistant."""
    missing = False
    with Client() as client:
        names = {d["id"]: d.get("name", "") for d in client.request("GET", _documents_path(slug)).get("documents") or []}
        for doc_id in ids:
            if doc_id in names and _delete(client, slug, doc_id):
                typer.echo(t("rag_removed", name=names[doc_id], id=doc_id))
            else:
                typer.echo(t("error", message=t("rag_no_document", id=doc_id, slug=slug)), err=True)
                missing = True
    if missing:
        raise typer.Exit(1)


def _delete(client: Client, slug: str, doc_id: int) -> bool:
    """Delete one document; False if the server does not know it (deleted meanwhile)."""
    try:
        client.request("DELETE", f"{_documents_path(slug)}/{doc_id}")
    except CLIError as exc:
        if exc.status == 404:
            return False
        raise
    return True


@rag_app.command("reembed")
@handle_errors
def reembed(slug: str = SLUG_ARG, as_json: bool = JSON_OPTION) -> None:
    """Embed the assistant's documents again after the embedding model was switched (in the background)."""
    with Client() as client:
        docs = client.request("POST", f"{_documents_path(slug)}/reembed").get("documents") or []
    if as_json:
        _print_json(docs)
        return
    typer.echo(t("rag_reembedding", count=len(docs)) if docs else t("rag_nothing_to_reembed"))
    if docs:
        print_table(["ID", "NAME"], [[str(d.get("id", "")), _cell(d.get("name"))] for d in docs])


@rag_app.command("search")
@handle_errors
def search(slug: str = SLUG_ARG,
           query: List[str] = typer.Argument(..., help="What to look for (several words are one query)."),
           k: int = typer.Option(5, "-k", "--top", min=1, max=50, help="How many passages."),
           as_json: bool = JSON_OPTION) -> None:
    """Search an assistant's documents the way its chat does; shows the best passages."""
    with Client() as client:
        results = client.request("POST", f"/assistants/{slug}/search",
                                 {"query": " ".join(query), "k": k}).get("results") or []
    if as_json:
        _print_json(results)
        return
    if not results:
        typer.echo(t("rag_no_results"))
        return
    print_table(["DOCUMENT", "PAGE", "HEADING", "SCORE", "TEXT"], [
        [_cell(r.get("document")), _cell(r.get("page")), _one_line(r.get("heading"), 60),
         f"{float(r.get('score') or 0):.3f}", _one_line(r.get("text"), EXCERPT_CHARS)] for r in results])
