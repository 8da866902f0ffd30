"""Which counters a request is checked against, from the policy's ``limits`` section.

Every limit is counted per caller (subject). The role limits of the roles a caller holds merge to
the most permissive value of each field (as caps do); a caller's own ``subjects`` entry and each
``models`` entry whose glob matches the model are separate limits, and a request needs all of
them to allow it.
"""

from __future__ import annotations

import calendar
import fnmatch
from datetime import UTC, datetime

from gateway.limits.base import Counter
from gateway.policy import Limit, Limits, parse_rate


def merge_limits(limits: list[Limit]) -> Limit | None:
    """The most permissive of several roles' limits; a field any role leaves unset is lifted."""
    if not limits:
        return None
    values: dict[str, object] = {}
    for field in Limit.model_fields:
        chosen = [getattr(limit, field) for limit in limits]
        if any(value is None for value in chosen):
            continue
        values[field] = max(chosen, key=_size)
    return Limit.model_validate(values)


def _size(value: object) -> float:
    if isinstance(value, str):
        count, seconds = parse_rate(value)
        return count / seconds
    return float(value)  # type: ignore[arg-type]


def _windows(now: float) -> dict[str, tuple[str, float]]:
    """The current UTC day and month: a name for each and the seconds left in it."""
    moment = datetime.fromtimestamp(now, UTC)
    day_end = datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp() + 86400
    last = calendar.monthrange(moment.year, moment.month)[1]
    month_end = datetime(moment.year, moment.month, last, tzinfo=UTC).timestamp() + 86400
    return {"daily_tokens": (moment.strftime("%Y-%m-%d"), day_end - now),
            "monthly_tokens": (moment.strftime("%Y-%m"), month_end - now)}


def _counters(limit: Limit, scope: str, subject: str, tokens: int, now: float) -> list[Counter]:
    prefix = f"vagt:limit:{scope}:{subject}"
    counters = []
    if limit.requests:
        count, seconds = parse_rate(limit.requests)
        counters.append(Counter(f"{prefix}:requests", "rate", count, seconds, 1,
                                f"requests ({limit.requests}, {scope})"))
    if limit.tokens:
        count, seconds = parse_rate(limit.tokens)
        counters.append(Counter(f"{prefix}:tokens", "rate", count, seconds, tokens,
                                f"tokens ({limit.tokens}, {scope})", per_token=True))
    if limit.concurrent:
        counters.append(Counter(f"{prefix}:concurrent", "concurrency", limit.concurrent, 0.0, 1,
                                f"concurrent requests ({limit.concurrent}, {scope})"))
    windows = _windows(now)
    for field in ("daily_tokens", "monthly_tokens"):
        budget = getattr(limit, field)
        if budget:
            window, left = windows[field]
            counters.append(Counter(f"{prefix}:{field}:{window}", "budget", budget, left,
                                    tokens, f"{field.replace('_', ' ')} ({budget}, {scope})",
                                    per_token=True))
    return counters


def counters_for(limits: Limits, *, subject: str, roles: frozenset[str],
                 model_names: tuple[str, ...], tokens: int, now: float) -> list[Counter]:
    """Every counter a request by ``subject`` on the model, reserving ``tokens``, must pass."""
    counters: list[Counter] = []
    merged = merge_limits([limits.roles[r] for r in sorted(roles) if r in limits.roles])
    if merged is not None:
        counters += _counters(merged, "roles", subject, tokens, now)
    if subject in limits.subjects:
        counters += _counters(limits.subjects[subject], "subject", subject, tokens, now)
    for pattern, limit in limits.models.items():
        if any(fnmatch.fnmatchcase(name, pattern) for name in model_names):
            counters += _counters(limit, f"model {pattern}", subject, tokens, now)
    return counters
