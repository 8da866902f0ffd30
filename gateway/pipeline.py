"""The one place where a request's stages are ordered.

    1 authenticate   headers → Principal (401), under the policy snapshot taken at the start
    2 authorize      (Principal, action, model) → Decision (403); caps applied to the request
    3 run            lease the model's pool and stream its events (404, 503, 502, 400)

Admission (limits), redaction, routing and audit are stages that later issues insert here, each a
small object with one entry point and no knowledge of HTTP. One request sees one policy snapshot
from start to finish.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass

from gateway.auth.principal import Principal
from gateway.errors import Forbidden, InternalError, translate
from gateway.policy import Action
from gateway.policy_store import PolicyStore, Snapshot
from gateway.rbac import capped
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


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller and the policy snapshot its request runs under."""

    principal: Principal
    snapshot: Snapshot

    def authorize(self, action: Action, spec: ModelSpec | None = None) -> None:
        self.snapshot.authorizer.authorize(self.principal.roles, action,
                                           spec.names if spec else ())

    def may_use(self, spec: ModelSpec) -> bool:
        return self.snapshot.authorizer.may_use(self.principal.roles, spec.names)

    def require_use(self, spec: ModelSpec) -> None:
        """Any model action on ``spec`` (showing, loading it): 403 otherwise."""
        if not self.may_use(spec):
            raise Forbidden(f"not permitted: model '{spec.name}'")


class Pipeline:
    policies: PolicyStore  # put in place when the app starts (it needs the database)

    def __init__(self, models: PoolManager) -> None:
        self.models = models

    async def authenticate(self, headers: Mapping[str, str], *, secure: bool) -> Caller:
        """Stage 1: who is calling (401 otherwise)."""
        snapshot = self.policies.current
        principal = await snapshot.authenticator.authenticate(headers, secure=secure)
        return Caller(principal, snapshot)

    def resolve(self, name: str) -> ModelSpec:
        try:
            return self.models.catalogue.resolve(name)
        except InferenceError as exc:
            raise translate(exc) from None

    def visible_models(self, caller: Caller) -> list[ModelSpec]:
        """The models the caller may use (for listings, which need models:list)."""
        caller.authorize("models:list")
        return [spec for spec in self.models.catalogue.models if caller.may_use(spec)]

    def _admit(self, caller: Caller, action: Action,
               request: ChatRequest | CompletionRequest) -> ChatRequest | CompletionRequest:
        """Stage 2: authorize the action on the model and bring the request within the caps."""
        spec = self.resolve(request.model)
        decision = caller.snapshot.authorizer.authorize(caller.principal.roles, action,
                                                        spec.names)
        sampling = capped(request.sampling, spec.parameters, decision.caps)
        return request.model_copy(update={"sampling": sampling})

    async def generate(self, caller: Caller, action: Action,
                       request: ChatRequest | CompletionRequest) -> AsyncIterator[Event]:
        """The request's events, started: a refusal (401/403/404/503/400…) is raised here,
        before the caller has sent a byte, so it can still choose the response status."""
        admitted = self._admit(caller, action, request)
        events = self._generate(admitted)
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

    async def embed(self, caller: Caller, request: EmbedRequest) -> Embeddings:
        spec = self.resolve(request.model)
        caller.authorize("embed", spec)
        try:
            async with self.models.lease(spec, request.keep_alive) as lease:
                result = await lease.pool.embed(request)
        except InferenceError as exc:
            raise translate(exc) from None
        result.timings.load_ns = lease.load_ns
        result.timings.total_ns += lease.load_ns
        return result

    async def load(self, caller: Caller, name: str, keep_alive: float | None) -> int:
        """Load a model without running anything (Ollama's empty prompt); the load time in ns."""
        spec = self.resolve(name)
        caller.require_use(spec)
        try:
            async with self.models.lease(spec, keep_alive) as lease:
                return lease.load_ns
        except InferenceError as exc:
            raise translate(exc) from None

    async def unload(self, caller: Caller, name: str) -> None:
        spec = self.resolve(name)
        caller.require_use(spec)
        await self.models.unload(spec.name)


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
