"""build_app(settings) → the Starlette application; its lifespan loads the catalogue and pools."""

from __future__ import annotations

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
from gateway.api.context import Context
from gateway.api.health import HealthAPI
from gateway.auth.apikeys import APIKeyAuthenticator, create_key
from gateway.auth.authenticator import Authenticator
from gateway.auth.keystore import open_key_store
from gateway.auth.ldap import LDAPAuthenticator
from gateway.auth.oidc import OIDCVerifier
from gateway.errors import GatewayError, InternalError
from gateway.pipeline import Pipeline
from gateway.policy import Policy, load_policy
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


FIRST_KEY_NAME = "admin"
FIRST_KEY_ROLE = "admin"


async def _authenticator(policy: Policy, settings: Settings,
                         http: httpx.AsyncClient) -> tuple[Authenticator, str | None]:
    """The authenticate stage, and the first admin key's secret when this start created it."""
    identity = policy.identity
    keys, first_key = None, None
    if identity.api_keys.enabled:
        store = await open_key_store(settings.store_url)
        keys = APIKeyAuthenticator(store, identity.api_keys.cache_ttl)
        if not await store.all():
            first_key = (await create_key(store, FIRST_KEY_NAME, FIRST_KEY_ROLE)).secret
    oidc = OIDCVerifier(identity.oidc, http) if identity.oidc else None
    ldap = LDAPAuthenticator(identity.ldap) if identity.ldap else None
    return Authenticator(policy, keys, oidc, ldap), first_key


def build_app(
    settings: Settings, on_ready: Callable[[Context, str | None], None] | None = None,
) -> Starlette:
    """The gateway. ``on_ready(context, first_key)`` runs once it serves; ``first_key`` is the
    secret of the admin API key created on this start (an empty key store), else None."""
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
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
            authenticator, first_key = await _authenticator(policy, settings, http)
            context.pipeline.authenticator = authenticator
            preload = [catalogue.default] if settings.preload and catalogue.default else []
            try:
                await manager.start(preload)
                log.info("policy version %s loaded from %s", policy.version, settings.policy)
                if on_ready is not None:
                    on_ready(context, first_key)
                yield
            finally:
                await manager.close()
                await authenticator.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: _http_error, Exception: _crash,
    })
    app.state.context = context
    return app
