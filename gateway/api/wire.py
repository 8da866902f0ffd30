"""What both API adapters share: size-capped body parsing into typed wire models, validation
errors that name the field, and the guard that renders GatewayErrors in the API's own shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit.log import AuditUnavailable
from gateway.audit.record import Trail
from gateway.errors import BadRequest, GatewayError, InternalError, PayloadTooLarge
from gateway.pipeline import Caller, Pipeline

log = logging.getLogger("vagt.api")

Wire = TypeVar("Wire", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


async def parse(request: Request, wire: type[Wire], limit: int) -> Wire:
    """The body as ``wire``; 413 when too large, 400 naming the field when invalid."""
    body = await read_body(request, limit)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg} (at {exc.pos})") from None
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return wire.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def invalid(exc: ValidationError) -> BadRequest:
    """A BadRequest naming the first invalid field, in the dotted form clients send."""
    error = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    message = error["msg"]
    return BadRequest(f"{field}: {message}" if field else message, param=field or None)


def typed(build: Callable[[], T]) -> T:
    """Build a typed request from wire values, turning a validation failure into a 400."""
    try:
        return build()
    except ValidationError as exc:
        raise invalid(exc) from None


POLICY_VERSION_HEADER = "x-vagt-policy-version"
REQUEST_ID_HEADER = "x-request-id"


def guarded(handler: Handler, render: Callable[[GatewayError], Response], pipeline: Pipeline,
            api: str) -> Handler:
    """``handler`` for authenticated callers only (the Caller is ``request.state.caller``), with
    every GatewayError rendered by ``render``, and every request recorded in the audit log
    before its response leaves (a generation's, by the pipeline, before its last byte). Every
    response names its request's id; responses to authenticated callers also name the policy
    version that decided them."""

    async def endpoint(request: Request) -> Response:
        trail = Trail(api, f"{request.method} {request.url.path}",
                      request.client.host if request.client else None, pipeline.audit.submit)
        caller: Caller | None = None
        error: GatewayError | None = None
        try:
            pipeline.audit.admit()
            caller = await pipeline.authenticate(request.headers, trail,
                                                 secure=request.url.scheme == "https")
            request.state.caller = caller
            response = await handler(request)
        except GatewayError as refused:
            error, response = refused, render(refused)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            error = InternalError("internal error")
            response = render(error)
        if error is not None or not trail.deferred:  # else the generation records itself
            try:
                trail.finish(response.status_code, error.code if error else None)
            except AuditUnavailable as unrecorded:  # a response that cannot be recorded
                caller, response = None, render(unrecorded)  # is not given
        response.headers[REQUEST_ID_HEADER] = trail.id
        if caller is not None:  # nothing is told to callers who did not authenticate
            response.headers[POLICY_VERSION_HEADER] = caller.snapshot.version
            response.headers.update(caller.response_headers)
        return response

    return endpoint


def guarded_routes(pipeline: Pipeline, render: Callable[[GatewayError], Response], api: str,
                   table: list[tuple[str, str, Handler]]) -> list[Route]:
    """Routes (method, path, handler) that all need an authenticated caller, for ``api``
    (openai, ollama, admin: how the audit log names them)."""
    return [Route(path, guarded(handler, render, pipeline, api), methods=[method])
            for method, path, handler in table]


def caller_of(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller
