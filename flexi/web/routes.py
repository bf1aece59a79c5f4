"""HTTP routes of the web interface.

- `GET /`: the chat page for browsers; "Ollama is running" for everyone else
  (Ollama clients probe `/` and compare that text), decided by `Accept`.
- `/ui/assets/…`: the page's scripts, styles and vendored libraries (public, no secrets).
- `GET /ui/config`: what the page needs before sign-in (public).
- `GET /docs`: the interactive API documentation (Swagger UI, vendored; no ReDoc).
- `GET /ui/models`: models the caller may use, with size, languages and licence.
- `GET /ui/catalog`: the catalogue of open-weight model families (flexi.catalog) with the caller's installed models.
- `GET /admin/usage/chart.svg`: usage charts for the admin dashboard.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from flexi import __version__
from flexi.http.locale import locale_of
from flexi.access import admin_ops as ops
from flexi.access.report import external_backends
from flexi.access.usage_queries import usage_summary
from flexi.campus.admin_common import transaction
from flexi.http.app_state import access_of, generation_of, state_of
from flexi.http.caller import caller_of
from flexi.db.models import LtiPlatform, utcnow
from flexi.campus import lti_pages
from flexi.catalog import installed_by_family, load_catalog, match_family
from flexi.http.headers import PAGE_HEADERS
from flexi.lti import platforms as lti_platforms
from flexi.engine.types import BadRequest
from flexi.store.store import ModelRecord
from flexi.web.charts import bar_chart
from flexi.http.negotiate import wants_html

log = logging.getLogger("flexi.web")
router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(str(resources.files("flexi.web") / "static"))
ASSETS_PREFIX = "/ui/assets"


def assets_app() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR, follow_symlink=False)


_page_cache: dict[str, str] = {}


def _page_html(name: str) -> str:
    if name not in _page_cache:
        text = (STATIC_DIR / f"{name}.html").read_text(encoding="utf-8")
        _page_cache[name] = text.replace("{{version}}", __version__)
    return _page_cache[name]


@router.api_route("/", methods=["GET", "HEAD"])
async def root(request: Request) -> Response:
    if wants_html(request.headers.get("accept")):
        return HTMLResponse(_page_html("index"), headers={"Cache-Control": "no-cache", "Vary": "Accept"})
    return Response("Ollama is running", media_type="text/plain", headers={"Vary": "Accept"})


@router.get("/lti/app")
def lti_app(request: Request, platform: int = 0) -> Response:
    """The chat page for a person launched from an LTI platform (flexi.campus.lti), framable by that
    platform's origin only; every other page keeps `frame-ancestors 'none'`. The shell holds no data:
    it signs in with the LTI session cookie like the main page with its own."""
    with access_of(request).sessions() as s:
        row = s.get(LtiPlatform, platform) if 0 < platform < 2**31 else None
        origins = lti_platforms.origins_of(row) if row is not None else []
    headers = {k.decode(): v.decode() for k, v in PAGE_HEADERS if k not in (b"content-security-policy", b"x-frame-options")}
    headers.update({"Content-Security-Policy": lti_pages.csp(origins), "Cache-Control": "no-cache"})
    return HTMLResponse(_page_html("index"), headers=headers)


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    """Swagger UI for /openapi.json, from the package: FastAPI's default page loads it from a CDN."""
    return HTMLResponse(_page_html("docs"), headers={"Cache-Control": "no-cache"})


@router.get("/ui/config")
def ui_config(request: Request) -> dict[str, Any]:
    settings = access_of(request).settings
    return {
        "version": __version__,
        "auth": settings.auth,
        "oidc": bool(settings.oidc_issuer and settings.oidc_client_id),
        "password": settings.auth == "on",
        "terms_version": settings.terms_version or None,
        "terms_url": settings.terms_url,
        "chat_history": getattr(settings, "chat_history", "browser"),
        "chat_retention_days": getattr(settings, "chat_retention_days", None),
        "default_locale": settings.default_locale,
        "privacy": {  # what the page tells people before they start (GDPR Art. 13), from the running configuration
            "usage_retention_days": settings.usage_retention_days,
            "content_log_purpose": settings.content_log_purpose,
            "content_log_retention_days": settings.content_log_retention_days if settings.content_log_purpose else None,
            "external_backends": _external(request),  # prompts to their models leave the university
        },
    }


def _external(request: Request) -> list[dict[str, str]]:
    sync = getattr(getattr(request.app.state, "flexi", None), "backends", None)
    stored = sync.stored if sync is not None else []
    return [{"name": e["name"], "host": e["host"]} for e in external_backends(access_of(request).settings, stored)]


def _first_line(text: str | None) -> str | None:
    line = (text or "").strip().splitlines()[0][:80] if (text or "").strip() else ""
    return line or None


def _model_card(record: ModelRecord) -> dict[str, Any]:
    info = record.info.model_info
    languages = info.get("general.languages")
    return {
        "name": record.name,
        "size": record.size,
        "parameter_size": record.details.get("parameter_size"),
        "quantization": record.details.get("quantization_level"),
        "family": record.details.get("family"),
        "languages": [str(x) for x in languages] if isinstance(languages, list) else [],
        "license": record.info.license or _first_line(record.license),
        "context_length": record.info.context_length,
        "capabilities": list(record.info.capabilities),
        "external": record.external,  # served by a cloud provider outside the campus
        "catalog": _catalog_badge(record),
    }


def _catalog_badge(record: ModelRecord) -> dict[str, Any] | None:
    """The catalogue family of a local model: what the picker shows next to it (licence, openness)."""
    match = None if record.external else match_family(record.info, record.name)
    if match is None:
        return None
    family = match.family
    return {"family": family.id, "name": family.name, "licence": family.licence_id,
            "openness": family.score(), "by": match.by}


def _measured(request: Request, digests: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The newest stored measurements of each model (`flexi bench|eval|safety|quant-report --save`): what the
    picker and the admin models tab show, e.g. the safety probes' pass rate before a teacher picks a model."""
    if not digests:
        return {}
    try:
        with access_of(request).sessions() as session:
            newest = ops.latest_model_reports(session, digests)
    except SQLAlchemyError as exc:  # the picker still works without the figures
        log.warning("cannot read stored model reports: %s", exc)
        return {}
    return {model: {kind: {"summary": r.summary, "created_at": r.created_at.isoformat(), "tool": r.tool}
                    for kind, r in per_kind.items()} for model, per_kind in newest.items()}


@router.get("/ui/models")
async def ui_models(request: Request) -> dict[str, Any]:
    state = state_of(request)
    records = await asyncio.to_thread(state.store.list)
    loaded = {entry.record.name for entry in state.manager.ps()}
    generation = generation_of(request)
    visible = generation.visible(caller_of(request), generation.with_remote(records))
    measured = await asyncio.to_thread(_measured, request, {r.name: r.digest for r in visible})
    cards = [{**_model_card(r), "loaded": r.name in loaded, "measured": measured.get(r.name, {})} for r in visible]
    return {"models": sorted(cards, key=lambda m: m["name"]), "default": state.settings.default_model}


@router.get("/ui/catalog")
async def ui_catalog(request: Request) -> dict[str, Any]:
    """The model-family catalogue, each family with the installed models this caller may use."""
    state = state_of(request)
    records = await asyncio.to_thread(state.store.list)
    visible = generation_of(request).visible(caller_of(request), records)
    catalog = load_catalog()
    installed = installed_by_family((r.name, r.info) for r in visible if not r.external)
    return {"framework": catalog.framework,
            "families": [{**f.to_dict(), "installed": installed.get(f.id, [])} for f in catalog.families]}


_CHART_TITLES = {
    ("requests", "day"): ("Requests per day", "Anfragen pro Tag"),
    ("tokens", "day"): ("Tokens per day", "Tokens pro Tag"),
    ("requests", "model"): ("Requests per model", "Anfragen pro Modell"),
    ("tokens", "model"): ("Tokens per model", "Tokens pro Modell"),
    ("requests", "course"): ("Requests per course", "Anfragen pro Kurs"),
    ("tokens", "course"): ("Tokens per course", "Tokens pro Kurs"),
}


@router.get("/admin/usage/chart.svg")
def usage_chart(request: Request, by: Literal["day", "model", "course"] = "day",
                metric: Literal["requests", "tokens"] = "requests", days: int = 30,
                lang: Literal["de", "en"] | None = None) -> Response:
    if not 1 <= days <= 366:
        raise BadRequest("days must be between 1 and 366", param="days")
    locale = lang or locale_of(request, default=access_of(request).settings.default_locale)
    since = utcnow() - timedelta(days=days)
    with transaction(request) as s:
        rows = usage_summary(s, by, since=since, limit=60 if by == "day" else 20)
    if by == "day":
        rows = sorted(rows, key=lambda r: str(r["day"]))
    labels = [str(r[by]) if r[by] is not None else ("(ohne Kurs)" if locale == "de" else "(no course)")
              for r in rows]
    values = [float(r["requests"] if metric == "requests" else r["prompt_tokens"] + r["completion_tokens"]) for r in rows]
    title = _CHART_TITLES[(metric, by)][1 if locale == "de" else 0]
    title += f" ({days} {'Tage' if locale == 'de' else 'days'})"
    return Response(bar_chart(title, labels, values, locale=locale), media_type="image/svg+xml",
                    headers={"Cache-Control": "no-store"})
