"""The one place where a request's stages are ordered.

    1 authenticate   headers → Principal (401), under the policy snapshot taken at the start
    2 authorize      (Principal, action, model) → Decision (403); caps applied to the request
    3 admit          reserve tokens against the limits (429); settled when the request ends
    4 run            lease the model's pool and stream its events (404, 503, 502, 400)

Every stage notes what it learned on the request's audit Trail (who, which rule, which limit,
which pool, the tokens); a generation is recorded before its last byte is sent, everything else
by the API's guard before the response leaves. Redaction and routing are stages that later issues
insert here, each a small object with one entry point and no knowledge of HTTP. One request sees
one policy snapshot from start to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gateway.audit.log import AuditLog
from gateway.audit.record import Trail
from gateway.auth.principal import Principal
from gateway.errors import Forbidden, GatewayError, InternalError, translate
from gateway.limits.stage import Admitter, Permit, RateLimited, rate_headers
from gateway.policy import Action
from gateway.policy_store import PolicyStore, Snapshot
from gateway.rbac import Decision, capped, refusal
from gateway.redaction.redactor import Redactable, Session
from gateway.redaction.stream import ResponseFilter
from inference.errors import InferenceError
from inference.manager import PoolManager
from inference.registry import ModelSpec
from inference.tokenizer import PromptCounters
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
    """An authenticated caller, the policy snapshot its request runs under, its request's audit
    trail, and the headers the stages want on its response (the rate-limit figures)."""

    principal: Principal
    snapshot: Snapshot
    trail: Trail
    response_headers: dict[str, str] = field(default_factory=dict)

    def authorize(self, action: Action, spec: ModelSpec | None = None) -> Decision:
        """Stage 2: the decision, noted on the trail; 403 when it denies."""
        if spec is not None:
            self.trail.model = spec.name
        decision = self.snapshot.authorizer.decide(self.principal.roles, action,
                                                   spec.names if spec else ())
        self.trail.decided(decision)
        if not decision.allowed:
            raise refusal(decision)
        return decision

    def may_use(self, spec: ModelSpec) -> bool:
        return self.snapshot.authorizer.may_use(self.principal.roles, spec.names)

    def require_use(self, spec: ModelSpec) -> None:
        """Any model action on ``spec`` (showing, loading it): 403 otherwise."""
        self.trail.model = spec.name
        if not self.may_use(spec):
            self.trail.rule = "deny by default"
            raise Forbidden(f"not permitted: model '{spec.name}'")


class Pipeline:
    # put in place when the app starts (they need the database)
    policies: PolicyStore
    audit: AuditLog

    def __init__(self, models: PoolManager, admitter: Admitter) -> None:
        self.models = models
        self.admitter = admitter
        self.tokens = PromptCounters(models.models_dir)
        self._settling: set[asyncio.Task[None]] = set()

    async def authenticate(self, headers: Mapping[str, str], trail: Trail, *,
                           secure: bool) -> Caller:
        """Stage 1: who is calling (401 otherwise)."""
        snapshot = self.policies.current
        trail.policy_version = snapshot.version
        principal = await snapshot.authenticator.authenticate(headers, secure=secure)
        trail.principal = principal
        return Caller(principal, snapshot, trail)

    def resolve(self, name: str) -> ModelSpec:
        try:
            return self.models.catalogue.resolve(name)
        except InferenceError as exc:
            raise translate(exc) from None

    def visible_models(self, caller: Caller) -> list[ModelSpec]:
        """The models the caller may use (for listings, which need models:list)."""
        caller.authorize("models:list")
        return [spec for spec in self.models.catalogue.models if caller.may_use(spec)]

    def _authorize(self, caller: Caller, action: Action, spec: ModelSpec,
                   request: ChatRequest | CompletionRequest) -> ChatRequest | CompletionRequest:
        """Stage 2: authorize the action on the model and bring the request within the caps."""
        decision = caller.authorize(action, spec)
        sampling = capped(request.sampling, spec.parameters, decision.caps)
        return request.model_copy(update={"sampling": sampling})

    async def generate(self, caller: Caller, action: Action,
                       request: ChatRequest | CompletionRequest) -> AsyncIterator[Event]:
        """The request's events, started: a refusal (401/403/404/429/503/400…) is raised here,
        before the caller has sent a byte, so it can still choose the response status."""
        spec = self.resolve(request.model)
        authorized = self._authorize(caller, action, spec, request)
        session = caller.snapshot.redactor.session(caller.principal.roles)
        admitted = self._redact(caller, session, authorized)
        prompt = 0

        async def estimate() -> int:
            nonlocal prompt
            prompt = await self.tokens.prompt_tokens(spec, admitted)
            return prompt + _most_generated(admitted, spec, prompt)

        permit = await self._reserve(caller, spec, estimate)
        events = self._generate(caller.trail, spec, admitted, permit, lambda: prompt, session)
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        caller.trail.deferred = True
        return _prepend(first, events)

    @staticmethod
    def _redact(caller: Caller, session: Session, request: Redactable) -> Redactable:
        """Stage 2b: what the model may see (403 when the policy blocks what the request
        carries); what was found goes to the audit trail as counts."""
        try:
            redacted = session.request(request)
        finally:
            caller.trail.pii = session.findings()
        if caller.snapshot.source.policy.audit.bodies == "redacted":
            caller.trail.body = {"request": _texts(redacted, session.redactor.masked)}
        return redacted

    async def _reserve(self, caller: Caller, spec: ModelSpec,
                       estimate: Callable[[], Awaitable[int]]) -> Permit:
        """Stage 3: admit under the limits (429), naming the caller's figures on its response."""
        try:
            permit = await self.admitter.admit(
                caller.snapshot.source.policy.limits, subject=caller.principal.subject,
                roles=caller.principal.roles, model_names=spec.names, estimate=estimate)
        except RateLimited as refused:
            caller.trail.limit = refused.verdict.counter.name if refused.verdict.counter else None
            raise
        caller.response_headers.update(rate_headers(permit.verdict))
        return permit

    def _settle(self, permit: Permit, used_tokens: int) -> None:
        """Settle in a task of its own: a request ends however it ends, cancelled included."""
        task = asyncio.create_task(self.admitter.settle(permit, used_tokens))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _generate(self, trail: Trail, spec: ModelSpec,
                        request: ChatRequest | CompletionRequest, permit: Permit,
                        prompt_tokens: Callable[[], int], session: Session
                        ) -> AsyncGenerator[Event]:
        used: int | None = None
        produced = 0
        redacting = bool(session.plan.acting("response") or session.pseudonyms)
        response = ResponseFilter(session) if redacting else None
        answer: list[str] | None = [] if trail.body is not None else None  # for the audit
        try:
            async with self.models.lease(spec, request.keep_alive) as lease:
                trail.pool, trail.hardware = lease.pool.name, lease.pool.hardware
                async for event in lease.pool.generate(request):
                    if isinstance(event, Done):
                        if response is not None and (rest := response.finish()):
                            yield Chunk(rest)
                        event.timings.load_ns = lease.load_ns
                        event.timings.total_ns += lease.load_ns
                        used = event.usage.total_tokens
                        trail.prompt_tokens = event.usage.prompt_tokens
                        trail.completion_tokens = event.usage.completion_tokens
                        trail.pii = session.findings()
                        if answer is not None and trail.body is not None:
                            trail.body["response"] = session.redactor.masked("".join(answer))
                        trail.finish(200)  # recorded before the caller has the last byte
                        yield event
                        continue
                    produced += 1
                    trail.first_token()
                    if answer is not None:
                        answer.append(event.text)
                    text = event.text if response is None else response.feed(event.text)
                    if text:
                        yield Chunk(text)
        except (InferenceError, GatewayError) as exc:
            error = translate(exc) if isinstance(exc, InferenceError) else exc
            if produced:  # failed mid-stream: the error travels in the stream
                trail.completion_tokens = produced
                trail.pii = session.findings()
                trail.finish(error.status, error.code)
            raise error from None
        finally:
            if used is None:  # cut short (client gone, worker died): what was really produced
                used = prompt_tokens() + produced if produced else 0  # 0: it never ran
                if produced:
                    trail.completion_tokens = produced
                    trail.finish(499, "client_disconnected")
            self._settle(permit, used)

    async def embed(self, caller: Caller, request: EmbedRequest) -> Embeddings:
        spec = self.resolve(request.model)
        caller.authorize("embed", spec)
        session = caller.snapshot.redactor.session(caller.principal.roles)
        request = self._redact(caller, session, request)

        async def estimate() -> int:
            return await self.tokens.input_tokens(spec, request)

        permit = await self._reserve(caller, spec, estimate)
        used = 0
        try:
            async with self.models.lease(spec, request.keep_alive) as lease:
                caller.trail.pool, caller.trail.hardware = lease.pool.name, lease.pool.hardware
                result = await lease.pool.embed(request)
            used = caller.trail.prompt_tokens = result.usage.prompt_tokens
        except InferenceError as exc:
            raise translate(exc) from None
        finally:
            self._settle(permit, used)
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


def _most_generated(request: ChatRequest | CompletionRequest, spec: ModelSpec,
                    prompt: int) -> int:
    """The most tokens the request may generate: its max_tokens (after caps), else the model's
    default, else the rest of the context window."""
    for limit in (request.sampling.num_predict, spec.parameters.num_predict):
        if limit is not None and limit > 0:
            return limit
    window = request.sampling.num_ctx or spec.parameters.num_ctx or 2048
    return max(0, window - prompt)


def _texts(request: ChatRequest | CompletionRequest | EmbedRequest,
           masked: Callable[[str], str]) -> object:
    """A request's texts for the audit log, every entity in them masked."""
    if isinstance(request, ChatRequest):
        return [{"role": m.role, "content": masked(m.content)} for m in request.messages]
    if isinstance(request, CompletionRequest):
        return {"prompt": masked(request.prompt),
                "suffix": None if request.suffix is None else masked(request.suffix)}
    return [masked(text) for text in request.inputs]


async def _prepend(first: Event, rest: AsyncGenerator[Event]) -> AsyncGenerator[Event]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


async def collect(events: AsyncIterator[Event]) -> tuple[str, Done]:
    """A whole generation: its text and its Done. Reads the stream to its end, so the worker is
    released and the request settled now, not whenever the generator is collected."""
    parts: list[str] = []
    done: Done | None = None
    async for event in events:
        if isinstance(event, Chunk):
            parts.append(event.text)
        else:
            done = event
    if done is None:
        raise InternalError("the generation ended without a result")
    return "".join(parts), done
