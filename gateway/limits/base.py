"""What a limiter counts, and the one protocol every store implements.

Three kinds of counter:

- ``rate``: GCRA (the generic cell rate algorithm). ``limit`` units per ``period`` seconds, with a
  burst of the whole limit; a request costs ``cost`` units (1 for a request, its tokens for a
  token rate). One number per key (the theoretical arrival time), so it is exact, needs no
  window bookkeeping, and is a few lines of atomic Lua in Redis.
- ``concurrency``: requests in flight; ``cost`` is 1 and settling releases it.
- ``budget``: units used in a calendar window (a UTC day or month) named in the key; ``period``
  is the time left until the window ends, after which the key expires.

A store checks every counter of a request at once and takes all or none. Settling refunds
what a request reserved but did not use (tokens) and releases its concurrency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["rate", "concurrency", "budget"]


@dataclass(frozen=True, slots=True)
class Counter:
    key: str  # namespaced: scope, subject, limit name (and window for budgets)
    kind: Kind
    limit: int
    period: float  # seconds: the rate's period, or the time left in a budget's window
    cost: int
    name: str  # what a person reads in a 429: "requests (60/minute, roles)"
    per_token: bool = False  # the cost is the request's tokens (token rates and budgets)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    counter: Counter | None  # the refusing counter, or the tightest one when allowed
    remaining: int  # units left on that counter after this request
    reset: float  # seconds until that counter is whole again
    retry_after: float  # seconds to wait before retrying (0 when allowed)


class LimiterUnavailable(Exception):
    """The limiter's store cannot be reached (the policy decides: fail open or closed)."""


class Limiter(Protocol):
    async def acquire(self, counters: Sequence[Counter], now: float) -> Verdict: ...

    async def settle(self, counters: Sequence[Counter], refunds: Sequence[int],
                     now: float) -> None: ...
