"""build_app(settings) → the Starlette application; its lifespan loads the catalogue and pools."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import ollama, openai
from gateway.api.context import Context
from gateway.api.health import HealthAPI
from gateway.errors import GatewayError, InternalError
from gateway.pipeline import Pipeline
from gateway.policy import load_policy
from gateway.settings import Settings
from inference.manager import PoolManager, PoolSettings
from inference.registry import Catalogue

log = logging.getLogger("vagt")


def _render_for(request: Request) -> Callable[[GatewayError], Response]:
    """Errors outside a handler (unknown route, a crash) still answer in the API's own shape."""
    return openai.error_response if request.url.path.startswith("/v1/") else ollama.error_response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = GatewayError(exc.detail)
    error.status = exc.status_code
    error.code = "not_found" if exc.status_code == 404 else "http_error"
    error.kind = "invalid_request_error"
    return _render_for(request)(error)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _render_for(request)(InternalError("internal error"))


def build_app(settings: Settings, on_ready: Callable[[Context], None] | None = None) -> Starlette:
    policy = load_policy(settings.policy)
    catalogue = Catalogue.load(settings.catalogue_path)
    manager = PoolManager(catalogue, settings.models_dir, PoolSettings(
        workers=settings.workers, threads=settings.threads, max_queue=settings.max_queue,
        queue_timeout=settings.queue_timeout, keep_alive=settings.keep_alive,
        max_loaded=settings.max_loaded_models,
    ))
    context = Context(settings=settings, pipeline=Pipeline(manager), started_at=int(time.time()))
    routes: list[Route] = [
        *HealthAPI(context).routes, *openai.OpenAIAPI(context).routes,
        *ollama.OllamaAPI(context).routes,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        preload = [catalogue.default] if settings.preload and catalogue.default else []
        await manager.start(preload)
        log.info("policy version %s loaded from %s", policy.version, settings.policy)
        if on_ready is not None:
            on_ready(context)
        try:
            yield
        finally:
            await manager.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: _http_error, Exception: _crash,
    })
    app.state.context = context
    return app
