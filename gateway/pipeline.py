"""The one place where a request's stages are ordered.

Today: authenticate, resolve the model, lease its pool, run. Authorization, admission,
redaction, routing and audit are stages that later issues insert here, each a small object with
one async entry point and no knowledge of HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping

from gateway.auth.authenticator import Authenticator
from gateway.auth.principal import Principal
from gateway.errors import InternalError, Unavailable, translate
from inference.errors import InferenceError
from inference.manager import PoolManager
from inference.registry import ModelSpec
from inference.types import (
    ChatRequest,
    Chunk,
    CompletionRequest,
    Done,
    Embeddings,
    EmbedRequest,
    Event,
)


class Pipeline:
    def __init__(self, models: PoolManager) -> None:
        self.models = models
        self.authenticator: Authenticator | None = None  # set when the app starts

    async def authenticate(self, headers: Mapping[str, str], *, secure: bool) -> Principal:
        """Stage 1: who is calling (401 otherwise)."""
        if self.authenticator is None:
            raise Unavailable("the gateway is starting")
        return await self.authenticator.authenticate(headers, secure=secure)

    def resolve(self, name: str) -> ModelSpec:
        try:
            return self.models.catalogue.resolve(name)
        except InferenceError as exc:
            raise translate(exc) from None

    async def generate(self, request: ChatRequest | CompletionRequest) -> AsyncIterator[Event]:
        """The request's events, started: a refusal (404, 503, 400…) is raised here, before the
        caller has sent a byte, so it can still choose the response status."""
        events = self._generate(request)
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        return _prepend(first, events)

    async def _generate(self, request: ChatRequest | CompletionRequest) -> AsyncGenerator[Event]:
        spec = self.resolve(request.model)
        try:
            async with self.models.lease(spec, request.keep_alive) as lease:
                async for event in lease.pool.generate(request):
                    if isinstance(event, Done):
                        event.timings.load_ns = lease.load_ns
                        event.timings.total_ns += lease.load_ns
                    yield event
        except InferenceError as exc:
            raise translate(exc) from None

    async def embed(self, request: EmbedRequest) -> Embeddings:
        spec = self.resolve(request.model)
        try:
            async with self.models.lease(spec, request.keep_alive) as lease:
                result = await lease.pool.embed(request)
        except InferenceError as exc:
            raise translate(exc) from None
        result.timings.load_ns = lease.load_ns
        result.timings.total_ns += lease.load_ns
        return result

    async def load(self, name: str, keep_alive: float | None) -> int:
        """Load a model without running anything (Ollama's empty prompt); the load time in ns."""
        spec = self.resolve(name)
        try:
            async with self.models.lease(spec, keep_alive) as lease:
                return lease.load_ns
        except InferenceError as exc:
            raise translate(exc) from None

    async def unload(self, name: str) -> None:
        await self.models.unload(self.resolve(name).name)


async def _prepend(first: Event, rest: AsyncGenerator[Event]) -> AsyncGenerator[Event]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


async def collect(events: AsyncIterator[Event]) -> tuple[str, Done]:
    """A whole generation: its text and its Done."""
    parts: list[str] = []
    async for event in events:
        if isinstance(event, Chunk):
            parts.append(event.text)
        else:
            return "".join(parts), event
    raise InternalError("the generation ended without a result")
