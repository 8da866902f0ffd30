"""What both API adapters share: size-capped body parsing into typed wire models, validation
errors that name the field, and the guard that renders GatewayErrors in the API's own shape."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import BadRequest, GatewayError, PayloadTooLarge
from gateway.pipeline import Caller, Pipeline

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


def guarded(handler: Handler, render: Callable[[GatewayError], Response],
            pipeline: Pipeline) -> Handler:
    """``handler`` for authenticated callers only (the Caller is ``request.state.caller``), with
    every GatewayError rendered by ``render``. Responses to authenticated callers name the policy
    version that decided them."""

    async def endpoint(request: Request) -> Response:
        caller: Caller | None = None
        try:
            caller = await pipeline.authenticate(request.headers,
                                                 secure=request.url.scheme == "https")
            request.state.caller = caller
            response = await handler(request)
        except GatewayError as error:
            response = render(error)
        if caller is not None:  # nothing is told to callers who did not authenticate
            response.headers[POLICY_VERSION_HEADER] = caller.snapshot.version
            response.headers.update(caller.response_headers)
        return response

    return endpoint


def guarded_routes(pipeline: Pipeline, render: Callable[[GatewayError], Response],
                   table: list[tuple[str, str, Handler]]) -> list[Route]:
    """Routes (method, path, handler) that all need an authenticated caller."""
    return [Route(path, guarded(handler, render, pipeline), methods=[method])
            for method, path, handler in table]


def caller_of(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller
