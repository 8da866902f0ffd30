"""The admin API: read, replace and explain the policy; list its versions; try redaction."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.context import Context
from gateway.api.openai import error_response
from gateway.api.wire import caller_of, guarded_routes, parse, read_body
from gateway.errors import BadRequest
from gateway.policy import Action
from gateway.policy_source import PolicyError, parse_policy
from gateway.rbac import explain
from gateway.redaction.redactor import Redactor, dry_run


def _invalid_policy(exc: PolicyError) -> JSONResponse:
    return JSONResponse({"error": {
        "message": f"the policy is invalid ({len(exc.problems)} problem(s)); the current "
                   "policy stays in force",
        "type": "invalid_request_error", "param": None, "code": "invalid_policy",
        "problems": [{"line": p.line, "column": p.column, "message": p.message}
                     for p in exc.problems]}}, status_code=422)


class _Explain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1)
    groups: list[str] = []
    idp_roles: list[str] = []
    api_key_role: str | None = None
    action: Action
    model: str | None = None


class _Redact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    roles: list[str] = []
    direction: Literal["request", "response"] = "request"
    policy: str | None = None  # a policy (YAML) to try instead of the one in force


class AdminAPI:
    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def routes(self) -> list[Route]:
        return guarded_routes(self.context.pipeline, error_response, "admin", [
            ("GET", "/admin/policy", self.policy),
            ("PUT", "/admin/policy", self.replace),
            ("GET", "/admin/policy/versions", self.versions),
            ("POST", "/admin/policy/explain", self.explain),
            ("POST", "/admin/redact", self.redact),
        ])

    async def policy(self, request: Request) -> Response:
        caller = caller_of(request)
        caller.authorize("policy:read")
        source = caller.snapshot.source
        return JSONResponse({"version": source.version, "origin": source.origin,
                             "text": source.text})

    async def replace(self, request: Request) -> Response:
        """PUT a new policy (YAML). It is validated completely before it replaces the current
        one, atomically; the file on disk is rewritten to match."""
        caller = caller_of(request)
        caller.authorize("policy:write")
        body = await read_body(request, self.context.settings.max_body_bytes)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise BadRequest("the policy must be UTF-8 text") from None
        store = self.context.pipeline.policies
        trail = caller.trail
        trail.kind = "admin"
        try:
            snapshot = await store.apply(text, author=caller.principal.subject, write_file=True)
        except PolicyError as exc:
            trail.detail = {"problems": [str(p) for p in exc.problems]}
            return _invalid_policy(exc)
        trail.target, trail.detail = snapshot.version, {"previous": caller.snapshot.version}
        return JSONResponse({"version": snapshot.version,
                             "previous": caller.snapshot.version})

    async def versions(self, request: Request) -> Response:
        caller = caller_of(request)
        caller.authorize("policy:read")
        store = self.context.pipeline.policies
        changes = await store.history.changes()
        return JSONResponse({"current": store.current.version, "versions": [
            {"version": c.version, "author": c.author, "origin": c.origin,
             "changed_at": c.changed_at} for c in changes]})

    async def explain(self, request: Request) -> Response:
        caller = caller_of(request)
        caller.authorize("policy:read")
        wire = await parse(request, _Explain, self.context.settings.max_body_bytes)
        names: tuple[str, ...] = ()
        if wire.model is not None:
            spec = self.context.catalogue.find(wire.model)
            names = spec.names if spec is not None else (wire.model,)
        return JSONResponse(explain(
            caller.snapshot.authorizer, subject=wire.subject, groups=frozenset(wire.groups),
            idp_roles=frozenset(wire.idp_roles), api_key_role=wire.api_key_role,
            action=wire.action, model_names=names))

    async def redact(self, request: Request) -> Response:
        """A dry run of the redaction, under the policy in force or one sent along (not yet
        deployed): the redacted text, the findings, and what would be blocked."""
        caller = caller_of(request)
        caller.authorize("policy:read")
        wire = await parse(request, _Redact, self.context.settings.max_body_bytes)
        redactor = caller.snapshot.redactor
        if wire.policy is not None:
            try:
                candidate = parse_policy(wire.policy, "<request>").policy
            except PolicyError as exc:
                return _invalid_policy(exc)
            redactor = Redactor(candidate.redaction, self.context.settings.hash_key())
        text, found, blocked = dry_run(redactor, wire.text, frozenset(wire.roles),
                                       wire.direction)
        return JSONResponse({"text": text, "findings": [f.as_dict() for f in found],
                             "blocked": blocked})
