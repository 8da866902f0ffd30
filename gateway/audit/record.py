"""The audit record: what happened to one request, or one admin action, as facts.

A ``Trail`` follows a request through the stages, each noting what it learned (who, which rule,
which model and pool, the tokens); ``finish`` turns it into the record, exactly once. Records
never hold a PII value: PII appears as counts per entity type, and the request's and response's
text only when the policy keeps bodies, with every entity found replaced by its type.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from gateway.auth.principal import Principal

if TYPE_CHECKING:
    from gateway.rbac import Decision as RuleDecision

Record = dict[str, Any]
Decision = Literal["allowed", "denied", "rate_limited", "failed"]

# Every record has every field, in this order (CSV columns follow it); chain fields come last.
# Numbers are integers (durations in microseconds): the canonical JSON that is hashed must not
# depend on how a language prints floats.
FIELDS = (
    "id", "time", "kind", "subject", "auth_method", "roles", "client", "api", "action", "route",
    "model", "pool", "hardware", "decision", "rule", "limit", "policy_version", "status",
    "error", "prompt_tokens", "completion_tokens", "latency_us", "ttft_us", "pii", "target",
    "detail", "body",
)
CHAIN_FIELDS = ("chain", "seq", "prev")


def new_id() -> str:
    """A request id: time-ordered (so ids sort roughly by time), unique."""
    return f"{time.time_ns() // 1000:x}-{uuid.uuid4().hex[:12]}"


def timestamp(at: float | None = None) -> str:
    """UTC, microseconds, fixed width: such strings sort in time order."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision_of(status: int) -> Decision:
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "rate_limited"
    return "failed" if status >= 400 else "allowed"


@dataclass(slots=True)
class Trail:
    """The facts of one request, noted by the stages as they learn them."""

    api: str
    route: str
    client: str | None
    submit: Callable[[Record], None]  # the audit log's; raises when the record cannot be kept
    id: str = field(default_factory=new_id)
    started_ns: int = field(default_factory=time.perf_counter_ns)
    time: str = field(default_factory=timestamp)
    principal: Principal | None = None
    action: str | None = None
    model: str | None = None
    pool: str | None = None
    hardware: str | None = None
    rule: str | None = None
    limit: str | None = None
    policy_version: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ns: int | None = None
    pii: dict[str, dict[str, int]] = field(default_factory=dict)  # direction → type → count
    target: str | None = None
    detail: dict[str, Any] | None = None
    body: dict[str, Any] | None = None  # the texts, PII masked, when the policy keeps them
    kind: Literal["request", "admin"] = "request"  # admin: changes the gateway's state
    deferred: bool = False  # a generation under way: the pipeline records it when it ends
    finished: bool = False

    def decided(self, decision: RuleDecision) -> None:
        self.action = decision.action
        if decision.rule is not None:
            self.rule = f"rule {decision.rule + 1} ({decision.location})"
        else:
            self.rule = "deny by default" if not decision.allowed else None

    def first_token(self) -> None:
        if self.ttft_ns is None:
            self.ttft_ns = time.perf_counter_ns() - self.started_ns

    def finish(self, status: int, error: str | None = None) -> None:
        """Record the request's outcome, once: the first call wins (the pipeline records a
        generation before its last byte; the API's guard records everything else). A stream
        that fails after its first byte is recorded with the status of the error it carries."""
        if self.finished:
            return
        self.finished = True
        elapsed = time.perf_counter_ns() - self.started_ns
        principal = self.principal
        self.submit({
            "id": self.id, "time": self.time, "kind": self.kind,
            "subject": principal.subject if principal else None,
            "auth_method": principal.method if principal else None,
            "roles": sorted(principal.roles) if principal else [],
            "client": self.client, "api": self.api, "action": self.action, "route": self.route,
            "model": self.model, "pool": self.pool, "hardware": self.hardware,
            "decision": decision_of(status), "rule": self.rule, "limit": self.limit,
            "policy_version": self.policy_version, "status": status, "error": error,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "latency_us": elapsed // 1000,
            "ttft_us": None if self.ttft_ns is None else self.ttft_ns // 1000,
            "pii": self.pii, "target": self.target, "detail": self.detail, "body": self.body,
        })


def admin_record(*, subject: str, action: str, target: str | None,
                 detail: dict[str, Any] | None, api: str = "cli", status: int = 200,
                 error: str | None = None, policy_version: str | None = None) -> Record:
    """An admin action taken outside the HTTP API: by the CLI on the gateway's host (``subject``
    is the OS user), or by the gateway itself (a policy file reload, a retention prune)."""
    return {**dict.fromkeys(FIELDS), "id": new_id(), "time": timestamp(), "kind": "admin",
            "subject": subject, "auth_method": "local", "roles": [], "api": api,
            "action": action, "decision": decision_of(status), "policy_version": policy_version,
            "status": status, "error": error, "pii": {}, "target": target, "detail": detail}
