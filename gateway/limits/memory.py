"""The embedded limiter: all counters in this process's memory (one gateway, no Redis).

Everything happens between two awaits of the event loop, so a request's counters are checked
and taken atomically without locks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.limits.base import Counter, Verdict


class MemoryLimiter:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}  # rate: theoretical arrival time
        self._used: dict[str, int] = {}  # concurrency and budgets
        self._expires: dict[str, float] = {}  # budgets: when the window ends
        self._calls = 0

    async def acquire(self, counters: Sequence[Counter], now: float) -> Verdict:
        self._prune(now)
        tightest: Verdict | None = None
        updates: list[tuple[Counter, float]] = []
        for counter in counters:
            verdict, update = self._check(counter, now)
            if not verdict.allowed:
                return verdict
            updates.append((counter, update))
            # the RateLimit headers speak of quotas over time, not of requests in flight
            if counter.kind != "concurrency" and (
                    tightest is None or verdict.remaining < tightest.remaining):
                tightest = verdict
        for counter, update in updates:
            if counter.kind == "rate":
                self._tat[counter.key] = update
            else:
                self._used[counter.key] = int(update)
                if counter.kind == "budget":
                    self._expires[counter.key] = now + counter.period
        return tightest or Verdict(True, None, 0, 0.0, 0.0)

    def _check(self, counter: Counter, now: float) -> tuple[Verdict, float]:
        if counter.kind == "rate":
            interval = counter.period / counter.limit
            tat = max(self._tat.get(counter.key, now), now) + counter.cost * interval
            late = tat - now - counter.period  # > 0: beyond the burst the rate allows
            if late > 1e-9:
                wait = math.inf if counter.cost > counter.limit else late
                return Verdict(False, counter, 0, tat - now - counter.cost * interval, wait), 0
            remaining = int((counter.period - (tat - now)) / interval + 1e-9)
            return Verdict(True, counter, remaining, tat - now, 0.0), tat
        used = self._used.get(counter.key, 0) + counter.cost
        left = counter.limit - used
        if left < 0:
            # concurrency frees up when a request ends (retry soon); a budget, when its window does
            wait = 1.0 if counter.kind == "concurrency" else counter.period
            return Verdict(False, counter, 0, wait, wait), 0
        reset = 0.0 if counter.kind == "concurrency" else counter.period
        return Verdict(True, counter, left, reset, 0.0), used

    async def settle(self, counters: Sequence[Counter], refunds: Sequence[int],
                     now: float) -> None:
        for counter, refund in zip(counters, refunds, strict=True):
            if counter.kind == "rate" and refund and counter.key in self._tat:
                self._tat[counter.key] -= refund * counter.period / counter.limit
            elif counter.kind != "rate" and counter.key in self._used:
                self._used[counter.key] = max(0, self._used[counter.key] - refund)

    def _prune(self, now: float) -> None:
        """Forget counters that no longer hold anything back (every 1000 calls)."""
        self._calls += 1
        if self._calls % 1000:
            return
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        for key in [k for k, end in self._expires.items() if end <= now]:
            self._expires.pop(key)
            self._used.pop(key, None)
        self._used = {k: v for k, v in self._used.items() if v > 0 or k in self._expires}
