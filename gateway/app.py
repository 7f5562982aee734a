"""The ASGI app: routes, error handlers, and the middleware in front of them.

Outermost first: metrics (counts every answer, refused ones too) -> bearer auth (before
any body is read) -> body size limit (413 before the body is read in full) -> the
embeddings fast path (well-formed ``POST /v1/embeddings`` only: gateway/fastpath.py) -> FastAPI
(CORS off: no CORS middleware, so browsers on other origins get no ``Access-Control``
headers). ``/healthz`` is the one path without auth; no docs UI is served (it would
load scripts from a CDN), only ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from elastiq import __version__
from elastiq.registry import Registry
from elastiq.settings import Settings
from gateway import http_errors, routes_jobs, routes_openai
from gateway.auth import AuthMiddleware, TokenSet
from gateway.bodylimit import BodyLimitMiddleware
from gateway.config import GatewayConfig
from gateway.fastpath import EmbeddingsFastPath
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.schemas import Health

log = logging.getLogger(__name__)

DESCRIPTION = """HTTP in front of an elastiq worker pool: OpenAI-compatible embeddings and
job endpoints for any model kind. Every path but `/healthz` needs `Authorization: Bearer <token>`.
Errors are `{"error": {"type", "message", "code", "param"}}` with the status of gateway/http_errors.py."""


def create_app(config: GatewayConfig | None = None, settings: Settings | None = None,
               registry: Registry | None = None) -> FastAPI:
    config = config or GatewayConfig()
    settings = settings or Settings.from_env()
    registry = registry or Registry.from_env()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from gateway.service import Service

        service = Service(config, settings, registry, metrics=metrics)
        metrics.watch_waiter(service.waiter)
        await service.start()
        app.state.service = service
        loop = asyncio.get_running_loop()
        for name in registry.names():        # load tokenizers now, not on a first request
            if registry.get(name).kind == "embed":
                await loop.run_in_executor(None, service.tokens.preload, registry.get(name))
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(title="elastiq gateway", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None, redirect_slashes=False)
    app.state.metrics = metrics
    app.include_router(routes_openai.router)
    app.include_router(routes_jobs.router)
    _misc_routes(app, metrics)
    http_errors.install(app)
    app.openapi = lambda: openapi(app)
    # added innermost first: the last one added runs first
    app.add_middleware(EmbeddingsFastPath, state=app.state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(AuthMiddleware, tokens=TokenSet(config.tokens))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _misc_routes(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/healthz", response_model=Health, tags=["operations"],
             summary="Up, and Redis reachable (no auth); 503 if Redis is not")
    async def healthz(request: Request) -> Response:
        service = request.app.state.service
        ok = await service.redis_ok()
        body = Health(status="ok" if ok else "unavailable", redis=ok,
                      results_subscription=service.waiter.connected)
        return Response(body.model_dump_json(), status_code=200 if ok else 503, media_type="application/json")

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text format)",
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)


def openapi(app: FastAPI) -> dict:
    """The OpenAPI document, with the bearer scheme every path but /healthz needs."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    doc.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a token from ELASTIQ_GATEWAY_TOKENS"}}
    doc["security"] = [{"bearer": []}]
    doc["paths"]["/healthz"]["get"]["security"] = []
    app.openapi_schema = doc
    return doc
