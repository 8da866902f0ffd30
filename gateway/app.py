"""build_app(settings) → the Starlette application. Its lifespan opens the database, puts the
policy in force (and watches its file), and loads the default model's pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import ollama, openai
from gateway.api.admin import AdminAPI
from gateway.api.audit import AuditAPI
from gateway.api.context import Context
from gateway.api.health import HealthAPI
from gateway.audit.log import AuditLog, AuditUnavailable
from gateway.audit.record import admin_record
from gateway.auth.apikeys import create_key
from gateway.auth.authenticator import AuthenticatorFactory
from gateway.auth.keystore import KeyStore
from gateway.errors import GatewayError, InternalError, RouteError
from gateway.limits.memory import MemoryLimiter
from gateway.limits.redis import RedisLimiter
from gateway.limits.stage import Admitter
from gateway.pipeline import Pipeline
from gateway.policy_source import load_policy
from gateway.policy_store import PolicyHistory, PolicyStore, ReloadListener
from gateway.settings import Settings
from gateway.store import open_database
from gateway.telemetry import metrics
from inference.manager import PoolManager, PoolSettings
from inference.registry import Catalogue

log = logging.getLogger("vagt")


def _render_for(request: Request) -> Callable[[GatewayError], Response]:
    """Errors outside a handler (unknown route, a crash) still answer in the API's own shape."""
    return openai.error_response if request.url.path.startswith("/v1/") else ollama.error_response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _render_for(request)(RouteError(exc.detail, exc.status_code))


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _render_for(request)(InternalError("internal error"))


def _audit_reloads(audit: AuditLog) -> ReloadListener:
    def record(previous: str, current: str, problems: list[str]) -> None:
        with contextlib.suppress(AuditUnavailable):  # the audit log has said why, loudly
            audit.submit(admin_record(
                subject="policy file", action="policy:reload", api="gateway", target=current,
                detail={"previous": previous, "problems": problems},
                status=422 if problems else 200,
                error="invalid_policy" if problems else None, policy_version=current))
    return record


FIRST_KEY_NAME = "admin"
FIRST_KEY_ROLE = "admin"


def build_app(
    settings: Settings, on_ready: Callable[[Context, str | None], None] | None = None,
) -> Starlette:
    """The gateway. ``on_ready(context, first_key)`` runs once it serves; ``first_key`` is the
    secret of the admin API key created on this start (an empty key store), else None.
    Raises PolicyError or CatalogueError when the policy or the catalogue is invalid."""
    initial_policy = load_policy(settings.policy)
    catalogue = Catalogue.load(settings.catalogue_path)
    manager = PoolManager(catalogue, settings.models_dir, PoolSettings(
        workers=settings.workers, threads=settings.threads, max_queue=settings.max_queue,
        queue_timeout=settings.queue_timeout, keep_alive=settings.keep_alive,
        max_loaded=settings.max_loaded_models,
    ))
    limiter = RedisLimiter(settings.limits_url) if settings.limits_url else MemoryLimiter()
    pipeline = Pipeline(manager, Admitter(limiter))
    context = Context(settings=settings, pipeline=pipeline, started_at=int(time.time()))
    routes: list[Route] = [
        *HealthAPI(context).routes, *openai.OpenAIAPI(context).routes,
        *ollama.OllamaAPI(context).routes, *AdminAPI(context).routes,
        *AuditAPI(context).routes,
    ]
    if settings.metrics:  # unauthenticated, like the health checks: bind it where it belongs
        routes.append(Route("/metrics", metrics, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await open_database(settings.store_url)
        keys = await KeyStore.open(db)
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
            authenticators = AuthenticatorFactory(keys, http)
            pipeline.policies = PolicyStore(settings.policy, await PolicyHistory.open(db),
                                            authenticators, initial_policy,
                                            settings.hash_key())
            await pipeline.policies.start()
            pipeline.audit = audit = await AuditLog.open(
                db, settings, lambda: pipeline.policies.current.source.policy.audit)
            await audit.start()
            pipeline.policies.on_reload = _audit_reloads(audit)
            watcher = asyncio.create_task(pipeline.policies.watch())
            preload = [catalogue.default] if settings.preload and catalogue.default else []
            try:
                await manager.start(preload)
                log.info("policy %s in force, from %s", initial_policy.version, settings.policy)
                # Only once everything started, so a failed start cannot swallow the key.
                first_key = None
                if initial_policy.policy.identity.api_keys.enabled and not await keys.all():
                    first_key = (await create_key(keys, FIRST_KEY_NAME, FIRST_KEY_ROLE)).secret
                    audit.submit(admin_record(
                        subject="vagt", action="keys:create", api="gateway",
                        target=FIRST_KEY_NAME, detail={"role": FIRST_KEY_ROLE, "first": True}))
                if on_ready is not None:
                    on_ready(context, first_key)
                yield
            finally:
                watcher.cancel()
                await manager.close()
                await audit.close()
                if isinstance(limiter, RedisLimiter):
                    await limiter.close()
                await authenticators.close()
                await db.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: _http_error, Exception: _crash,
    })
    app.state.context = context
    return app
