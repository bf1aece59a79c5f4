"""Course documents of an assistant (issue 13): upload (files or a URL), list, delete, page view, search.

Teachers of the assistant's course and admins add and delete; whoever may use the assistant lists,
searches and opens pages. Every route finds the assistant by slug with the caller's rights first, and
every document id is looked up within that assistant, so a course-B document id in a course-A request
is a 404 like a missing one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from flexi import i18n
from flexi.access.errors import forbidden
from flexi.campus.admin_common import AdminRoute
from flexi.campus.assistants import MAX_ID, find_usable
from flexi.db.models import Assistant
from flexi.engine.types import BadRequest, EngineError
from flexi.http.app_state import access_of, state_of
from flexi.http.caller import caller_of
from flexi.http.errors import parse_body
from flexi.rag.fetch import fetch_document
from flexi.rag.library import MAX_FILES_PER_UPLOAD, DocumentLibrary

router = APIRouter(prefix="/assistants", tags=["course documents"], route_class=AdminRoute)


class UrlUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=50)


def library_of(request: Request) -> DocumentLibrary:
    return state_of(request).documents  # type: ignore[no-any-return]


async def _assistant(request: Request, slug: str, *, edit: bool = False) -> Assistant:
    caller = caller_of(request)

    def load() -> tuple[Assistant, bool]:
        with Session(access_of(request).engine) as s:
            a, r = find_usable(s, caller.principal, caller.locale, slug=slug)
            return a, r.edit

    a, may_edit = await asyncio.to_thread(load)
    if edit and not may_edit:
        raise forbidden(i18n.text("documents_edit", caller.locale))
    return a


def _missing(request: Request, document_id: int) -> EngineError:
    return EngineError(i18n.text("document_missing", caller_of(request).locale, document_id=document_id), 404, "not_found")


@router.post("/{slug}/documents", status_code=202, summary="Add documents (multipart `file`, or JSON {url})")
async def add_documents(request: Request, slug: str) -> dict[str, Any]:
    a = await _assistant(request, slug, edit=True)
    caller, library = caller_of(request), library_of(request)
    settings = state_of(request).settings
    out: list[dict[str, Any]] = []
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_FILES_PER_UPLOAD, max_fields=MAX_FILES_PER_UPLOAD,
                                  max_part_size=settings.rag_max_upload_bytes + 1)
        try:
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                raise BadRequest(i18n.text("documents_none", caller.locale), param="file")
            for upload in files:
                data = await upload.read(settings.rag_max_upload_bytes + 1)
                out.append(await library.add(a.id, upload.filename or "document", data, caller.principal.user_id,
                                             media_type=upload.content_type or ""))
        finally:
            await form.close()
    else:
        body = await parse_body(request, UrlUpload)
        fetched = await fetch_document(body.url, settings.document_url_allow_hosts, settings.rag_max_upload_bytes)
        out.append(await library.add(a.id, fetched.name, fetched.body, caller.principal.user_id,
                                     source_url=fetched.url, media_type=fetched.media_type))
    return {"documents": out}


@router.post("/{slug}/documents/reembed", status_code=202,
             summary="Embed the documents again with the current embedding model (after the operator switched models)")
async def reembed_documents(request: Request, slug: str) -> dict[str, Any]:
    a = await _assistant(request, slug, edit=True)
    return {"documents": await library_of(request).reembed(a.id)}


@router.get("/{slug}/documents", summary="The assistant's documents and how far each got")
async def list_documents(request: Request, slug: str) -> dict[str, Any]:
    a = await _assistant(request, slug)
    return {"documents": await asyncio.to_thread(library_of(request).list, a.id)}


@router.delete("/{slug}/documents/{document_id}", status_code=204, summary="Delete a document with its chunks")
async def delete_document(request: Request, slug: str, document_id: int) -> Response:
    a = await _assistant(request, slug, edit=True)
    if not 1 <= document_id <= MAX_ID or not await asyncio.to_thread(library_of(request).delete, a.id, document_id):
        raise _missing(request, document_id)
    return Response(status_code=204)


@router.get("/{slug}/documents/{document_id}/pages/{page}", summary="One page's text (what a citation opens)")
async def document_page(request: Request, slug: str, document_id: int, page: int) -> dict[str, Any]:
    a = await _assistant(request, slug)
    found = None
    if 1 <= document_id <= MAX_ID and 1 <= page <= 1_000_000:
        found = await asyncio.to_thread(library_of(request).page, a.id, document_id, page)
    if found is None:
        raise EngineError(i18n.text("page_missing", caller_of(request).locale, page=page, document_id=document_id),
                          404, "not_found")
    return found


@router.post("/{slug}/search", summary="Search the assistant's documents")
async def search(request: Request, slug: str) -> dict[str, Any]:
    a = await _assistant(request, slug)
    body = await parse_body(request, SearchBody)
    results = await library_of(request).search(a.id, body.query, body.k, user=caller_of(request).identity_for(None))
    return {"results": [r.__dict__ for r in results]}
