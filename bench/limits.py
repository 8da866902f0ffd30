"""Limiter cost per request and accuracy across replicas.

- cost: `acquire` + `settle` of a typical request's counters (a request rate, a token rate, a
  concurrency slot, a daily token budget), in memory (target ≤ 20 µs median) and in a Redis on
  loopback (target ≤ 0.3 ms median);
- accuracy: 200 concurrent clients split over two limiters with their own connection pools (two
  replicas) against one Redis, for a limit of 1000 requests: admitted ÷ configured (target
  exactly 1.00).

Usage: python bench/limits.py [--rounds N]   (starts its own redis-server)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis
from micro import report, summary

from gateway.limits.base import Counter, Limiter
from gateway.limits.counters import counters_for
from gateway.limits.memory import MemoryLimiter
from gateway.limits.redis import RedisLimiter
from gateway.policy import Limit, Limits
from tests.servers.redis import RedisServer

LIMITS = Limits(roles={"users": Limit(requests="1000000/minute", tokens="100000000/hour",
                                      concurrent=1000, daily_tokens=10**12)})


async def cost(limiter: Limiter, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """(acquire alone — what a request waits for; acquire + settle — all the limiter's work)."""
    admitted, whole = [], []
    for i in range(rounds + 200):
        now = time.time()
        counters = counters_for(LIMITS, subject=f"user-{i % 50}", roles=frozenset({"users"}),
                                model_names=("m",), tokens=500, now=now)
        started = time.perf_counter_ns()
        await limiter.acquire(counters, now)
        acquired = time.perf_counter_ns()
        await limiter.settle(counters, [1 if c.kind == "concurrency" else 100 if c.per_token
                                        else 0 for c in counters], now)
        if i >= 200:  # warmed up
            admitted.append((acquired - started) / 1000)
            whole.append((time.perf_counter_ns() - started) / 1000)
    return summary(admitted), summary(whole)


async def ping(url: str, rounds: int) -> dict[str, float]:
    """The floor: one round trip to the same Redis with the same client library."""
    client = aioredis.Redis.from_url(url)
    samples = []
    for i in range(rounds + 200):
        started = time.perf_counter_ns()
        await client.ping()
        if i >= 200:
            samples.append((time.perf_counter_ns() - started) / 1000)
    await client.aclose()
    return summary(samples)


async def accuracy(url: str, limit: int = 1000, clients: int = 200) -> float:
    replicas = [RedisLimiter(url), RedisLimiter(url)]
    counter = Counter("vagt:limit:bench:accuracy", "rate", limit, 3600.0, 1, "accuracy")
    admitted = 0

    async def client(limiter: RedisLimiter) -> None:
        nonlocal admitted
        for _ in range(limit * 2 // clients):  # twice as many attempts as the limit allows
            if (await limiter.acquire([counter], time.time())).allowed:
                admitted += 1

    await asyncio.gather(*(client(replicas[i % 2]) for i in range(clients)))
    for replica in replicas:
        await replica.close()
    return admitted / limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    server = RedisServer()
    try:
        async def run() -> dict[str, dict[str, float]]:
            redis = RedisLimiter(server.url)
            results: dict[str, dict[str, float]] = {}
            for name, limiter in (("memory", MemoryLimiter()), ("redis (loopback)", redis)):
                admitted, whole = await cost(limiter, args.rounds)
                results[f"{name}: acquire (on the request path)"] = admitted
                results[f"{name}: acquire + settle"] = whole
            await redis.close()
            results["redis (loopback): PING with the same client (one round trip)"] = \
                await ping(server.url, args.rounds)
            ratio = await accuracy(server.url)
            results["redis: admitted ÷ configured, 200 clients, 2 replicas"] = {
                "median_us": ratio, "p90_us": ratio, "n": 1}
            return results
        results = asyncio.run(run())
    finally:
        server.stop()
    report("limits", "case", results)


if __name__ == "__main__":
    main()
