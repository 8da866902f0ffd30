"""Prometheus metrics. Served at /metrics when the settings enable it (VAGT_METRICS=true).

Only counters without identities in their labels: no subjects, keys or prompts.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.requests import Request
from starlette.responses import Response

REGISTRY = CollectorRegistry()

LIMIT_STORE_ERRORS = Counter(
    "vagt_limit_store_errors", "Calls to the limits store (Redis) that failed, by outcome.",
    ["outcome"], registry=REGISTRY)  # outcome: refused (fail closed), admitted (fail open), settle
RATE_LIMITED = Counter(
    "vagt_rate_limited_requests", "Requests refused with 429, by kind of limit.", ["kind"],
    registry=REGISTRY)
PII_FINDINGS = Counter(
    "vagt_pii_findings", "PII found by the redact stage, by entity type and direction "
    "(request, response).", ["entity", "direction"], registry=REGISTRY)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
