"""The gateway's errors: each carries an HTTP status, a stable code and a message safe to show.

Stages raise these; the API adapters render them in their own wire shape. Errors from the
inference layer are translated here, in one place.
"""

from __future__ import annotations

import logging

from inference import errors as inference

log = logging.getLogger("vagt.errors")


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    kind = "server_error"  # OpenAI's error "type"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(GatewayError):
    status = 400
    code = "invalid_request"
    kind = "invalid_request_error"


class Unauthorized(GatewayError):
    """Any authentication failure. One generic message: it never says which check failed or
    whether the user exists."""

    status = 401
    code = "invalid_api_key"
    kind = "invalid_request_error"

    def __init__(self, challenge: str) -> None:
        super().__init__("authentication required: missing or invalid credentials")
        self.challenge = challenge

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class Forbidden(GatewayError):
    status = 403
    code = "permission_denied"
    kind = "permission_error"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"
    kind = "invalid_request_error"


class NotFound(GatewayError):
    status = 404
    code = "model_not_found"
    kind = "invalid_request_error"


class Unavailable(GatewayError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamFailed(GatewayError):
    status = 502
    code = "worker_failed"


class RouteError(GatewayError):
    """No such route, or a method the route does not take (Starlette's 404 and 405)."""

    kind = "invalid_request_error"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")


class InternalError(GatewayError):
    pass


def translate(exc: inference.InferenceError) -> GatewayError:
    """The gateway error for an inference-layer error."""
    if isinstance(exc, inference.ModelNotFound):
        return NotFound(str(exc), param="model")
    if isinstance(exc, inference.Busy):
        return Unavailable(str(exc), retry_after=exc.retry_after)
    if isinstance(exc, inference.InvalidRequest):
        return BadRequest(str(exc))
    if isinstance(exc, inference.WorkerFailed):
        return UpstreamFailed(str(exc))
    # Missing weights, checksum mismatch, broken catalogue: operators need the detail (it names
    # files and hashes), clients only need to know the model cannot be served.
    log.error("%s", exc)
    return Unavailable("the model is unavailable; the gateway's log has the reason", retry_after=30)
