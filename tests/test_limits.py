"""The limiters (in memory, and in a real Redis) and the counters the policy asks for, on an
injected clock: both stores must give the same answers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest
import redis as sync_redis

from gateway.limits.base import Counter, Limiter, Verdict
from gateway.limits.counters import counters_for, merge_limits
from gateway.limits.memory import MemoryLimiter
from gateway.limits.redis import RedisLimiter
from gateway.policy import Limit, Limits
from gateway.policy_source import PolicyError, parse_policy
from tests.servers.redis import RedisServer

T = TypeVar("T")

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


Store = Callable[[], Limiter]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Store:
    """Makes the limiter under test. Redis keeps its counters between the clients this makes
    (each asyncio.run needs its own), so every test starts from an empty database."""
    if request.param == "memory":
        limiter = MemoryLimiter()
        return lambda: limiter
    server: RedisServer = request.getfixturevalue("redis_server")
    sync_redis.Redis.from_url(server.url).flushdb()
    return lambda: RedisLimiter(server.url)


def _run(store: Store, work: Callable[[Limiter], Awaitable[T]]) -> T:
    async def run() -> T:
        limiter = store()
        try:
            return await work(limiter)
        finally:
            if isinstance(limiter, RedisLimiter):
                await limiter.close()
    return asyncio.run(run())


def acquire(store: Store, counters: list[Counter], now: float) -> Verdict:
    return _run(store, lambda limiter: limiter.acquire(counters, now))


def settle(store: Store, counters: list[Counter], refunds: list[int], now: float) -> None:
    _run(store, lambda limiter: limiter.settle(counters, refunds, now))


def rate(limit: int, period: float, cost: int = 1, key: str = "k") -> Counter:
    return Counter(key, "rate", limit, period, cost, "test rate")


def test_rate_admits_exactly_the_limit_then_paces(store: Store) -> None:
    admitted = [acquire(store, [rate(60, 60.0)], NOON).allowed for _ in range(61)]
    assert admitted == [True] * 60 + [False]
    refused = acquire(store, [rate(60, 60.0)], NOON)
    assert refused.retry_after == pytest.approx(1.0)
    assert acquire(store, [rate(60, 60.0)], NOON + 0.99).allowed is False
    assert acquire(store, [rate(60, 60.0)], NOON + 1.0).allowed is True
    assert acquire(store, [rate(60, 60.0)], NOON + 1.0).allowed is False
    after = acquire(store, [rate(60, 60.0)], NOON + 61.0)  # a full period later: whole again
    assert after.allowed
    assert after.remaining == 59


def test_remaining_and_reset_count_down(store: Store) -> None:
    first = acquire(store, [rate(10, 10.0)], NOON)
    assert (first.remaining, first.reset) == (9, pytest.approx(1.0))
    second = acquire(store, [rate(10, 10.0)], NOON)
    assert (second.remaining, second.reset) == (8, pytest.approx(2.0))


def test_token_cost_and_refund(store: Store) -> None:
    tokens = rate(1000, 60.0, cost=800)
    assert acquire(store, [tokens], NOON).allowed
    assert not acquire(store, [tokens], NOON).allowed  # 1600 > 1000
    settle(store, [tokens], [700], NOON)  # only 100 were used
    assert acquire(store, [tokens], NOON).allowed  # 100 + 800 ≤ 1000


def test_a_cost_beyond_the_limit_never_fits(store: Store) -> None:
    verdict = acquire(store, [rate(100, 60.0, cost=500)], NOON)
    assert not verdict.allowed
    assert math.isinf(verdict.retry_after)


def test_concurrency_is_released_on_settle(store: Store) -> None:
    slot = Counter("c", "concurrency", 2, 0.0, 1, "concurrent")
    assert acquire(store, [slot], NOON).allowed
    assert acquire(store, [slot], NOON).allowed
    assert not acquire(store, [slot], NOON).allowed
    settle(store, [slot], [1], NOON)
    assert acquire(store, [slot], NOON).allowed


def test_all_or_nothing(store: Store) -> None:
    roomy, tight = rate(100, 60.0, key="roomy"), rate(1, 60.0, key="tight")
    assert acquire(store, [roomy, tight], NOON).allowed
    refused = acquire(store, [roomy, tight], NOON)
    assert not refused.allowed
    assert refused.counter == tight
    assert acquire(store, [roomy], NOON).remaining == 98  # the refused request took nothing


def test_budgets_reset_at_the_calendar_boundary(store: Store) -> None:
    limits = Limits(roles={"a": Limit(daily_tokens=1000, monthly_tokens=1500)})

    def spend(now: float, tokens: int) -> Verdict:
        return acquire(store, counters_for(limits, subject="s", roles=frozenset({"a"}),
                                             model_names=("m",), tokens=tokens, now=now), now)

    assert spend(NOON, 900).allowed
    refused = spend(NOON, 200)
    assert not refused.allowed
    assert refused.counter is not None
    assert refused.counter.name.startswith("daily tokens")
    assert refused.retry_after == pytest.approx(12 * 3600)  # until midnight UTC
    tomorrow = NOON + 12 * 3600 + 1
    assert spend(tomorrow, 500).allowed  # a new day, the same month: 1400 of 1500
    monthly = spend(tomorrow, 200)
    assert not monthly.allowed
    assert monthly.counter is not None
    assert monthly.counter.name.startswith("monthly tokens")
    december = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    assert spend(december, 900).allowed


def test_counters_compose_roles_subjects_and_models() -> None:
    limits = Limits(
        roles={"analysts": Limit(requests="60/minute", concurrent=2),
               "engineers": Limit(requests="600/minute")},
        subjects={"alice": Limit(tokens="10000/hour")},
        models={"big-*": Limit(concurrent=1)})
    counters = counters_for(limits, subject="alice", roles=frozenset({"analysts", "engineers"}),
                            model_names=("big-70b",), tokens=300, now=NOON)
    by_name = {c.name: c for c in counters}
    # the roles merge to the most permissive value; engineers set no concurrency, so none
    assert by_name["requests (600/minute, roles)"].limit == 600
    assert not any(n.startswith("concurrent requests (2") for n in by_name)
    assert by_name["tokens (10000/hour, subject)"].cost == 300
    assert by_name["concurrent requests (1, model big-*)"].limit == 1
    assert all(c.key.startswith("vagt:limit:") and ":alice:" in c.key for c in counters)
    assert counters_for(limits, subject="bob", roles=frozenset(), model_names=("small",),
                        tokens=1, now=NOON) == []


def test_merge_limits() -> None:
    merged = merge_limits([Limit(requests="10/second", daily_tokens=5),
                           Limit(requests="60/minute", daily_tokens=50)])
    assert merged == Limit(requests="10/second", daily_tokens=50)


def test_policy_limits_are_validated() -> None:
    text = "version: 1\nroles:\n  a: {}\nlimits:\n  roles:\n    b:\n      requests: 5/fortnight\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    messages = [str(p) for p in caught.value.problems]
    assert any("p.yaml:7:17" in m and "COUNT/PERIOD" in m for m in messages), messages
    with pytest.raises(PolicyError, match="role 'b' in limits is not defined"):
        parse_policy(text.replace("5/fortnight", "5/minute"), "p.yaml")
