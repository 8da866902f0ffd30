"""/healthz (the process is alive) and /readyz (the catalogue is valid, the default pool is up)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.context import Context


class HealthAPI:
    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def routes(self) -> list[Route]:
        return [Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"])]

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        catalogue = self.context.catalogue
        default = catalogue.default
        pool = None if default is None else self.context.pipeline.models.pool(default)
        ready = pool is not None and pool.ready
        body = {
            "status": "ready" if ready else "not ready",
            "models": len(catalogue.models),
            "default_model": default,
            "workers": {"up": len(pool.pids) if pool else 0,
                        "expected": pool.size if pool else self.context.settings.workers,
                        "busy": pool.busy if pool else 0,
                        "queued": pool.waiting if pool else 0,
                        "restarts": pool.restarts if pool else 0},
        }
        return JSONResponse(body, status_code=200 if ready else 503)
