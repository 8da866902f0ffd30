"""The admit stage (before a request runs) and its settlement (however the request ends).

Admission reserves a request's estimated tokens — its prompt, counted with the model's
tokenizer, plus the most it may generate — against every limit that applies, or refuses it
with 429. Settlement refunds what was reserved but not used and frees the concurrency slot.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from gateway.errors import GatewayError, Unavailable
from gateway.limits.base import Counter, Limiter, LimiterUnavailable, Verdict
from gateway.limits.counters import counters_for
from gateway.policy import Limits
from gateway.telemetry import LIMIT_STORE_ERRORS, RATE_LIMITED

log = logging.getLogger("vagt.limits")


class RateLimited(GatewayError):
    status = 429
    code = "rate_limit_exceeded"
    kind = "rate_limit_error"

    def __init__(self, verdict: Verdict) -> None:
        assert verdict.counter is not None
        wait = verdict.retry_after
        when = "it can never fit" if math.isinf(wait) else f"retry in {math.ceil(wait)} s"
        super().__init__(f"rate limit reached: {verdict.counter.name}; {when}")
        self.verdict = verdict

    @property
    def headers(self) -> dict[str, str]:
        wait = self.verdict.retry_after
        return {**rate_headers(self.verdict),
                "Retry-After": str(86400 if math.isinf(wait) else max(1, math.ceil(wait)))}


def rate_headers(verdict: Verdict) -> dict[str, str]:
    """RateLimit-Limit/Remaining/Reset for the tightest limit (the caller's own figures only)."""
    if verdict.counter is None:
        return {}
    return {"RateLimit-Limit": str(verdict.counter.limit),
            "RateLimit-Remaining": str(max(0, verdict.remaining)),
            "RateLimit-Reset": str(math.ceil(verdict.reset))}


@dataclass(frozen=True, slots=True)
class Permit:
    counters: tuple[Counter, ...]
    reserved: int  # tokens reserved
    verdict: Verdict


class Admitter:
    def __init__(self, limiter: Limiter, clock: Callable[[], float] = time.time) -> None:
        self.limiter = limiter
        self.clock = clock

    async def admit(self, limits: Limits, *, subject: str, roles: frozenset[str],
                    model_names: tuple[str, ...],
                    estimate: Callable[[], Awaitable[int]]) -> Permit:
        """Reserve against every applicable limit; ``estimate`` is only called (it tokenizes)
        when a token limit applies. Raises RateLimited, or Unavailable when the store is down
        and the policy fails closed."""
        now = self.clock()
        counters = counters_for(limits, subject=subject, roles=roles, model_names=model_names,
                                tokens=0, now=now)
        if not counters:
            return Permit((), 0, Verdict(True, None, 0, 0.0, 0.0))
        tokens = await estimate() if any(c.per_token for c in counters) else 0
        counters = [replace(c, cost=tokens) if c.per_token else c for c in counters]
        try:
            verdict = await self.limiter.acquire(counters, now)
        except LimiterUnavailable as exc:
            if limits.on_store_failure == "open":
                LIMIT_STORE_ERRORS.labels("admitted").inc()
                log.error("limits not enforced (store unavailable, failing open): %s", exc)
                return Permit((), 0, Verdict(True, None, 0, 0.0, 0.0))
            LIMIT_STORE_ERRORS.labels("refused").inc()
            log.error("request refused (limit store unavailable, failing closed): %s", exc)
            raise Unavailable("limits cannot be checked right now; retry shortly",
                              retry_after=5) from None
        if not verdict.allowed:
            RATE_LIMITED.labels(verdict.counter.kind if verdict.counter else "unknown").inc()
            raise RateLimited(verdict)
        return Permit(tuple(counters), tokens, verdict)

    async def settle(self, permit: Permit, used_tokens: int) -> None:
        """Refund unused tokens and release the concurrency slot."""
        if not permit.counters:
            return
        refunds = [1 if c.kind == "concurrency"
                   else max(0, permit.reserved - used_tokens) if c.per_token else 0
                   for c in permit.counters]
        try:
            await self.limiter.settle(permit.counters, refunds, self.clock())
        except LimiterUnavailable as exc:
            LIMIT_STORE_ERRORS.labels("settle").inc()
            log.error("could not settle a request's limits: %s", exc)
