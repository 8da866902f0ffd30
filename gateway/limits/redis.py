"""The shared limiter: counters in Redis, exact across any number of gateway replicas.

One Lua script checks and takes all of a request's counters atomically on the server (Redis
runs a script alone), so two replicas can never both take the last unit. GCRA keeps one number
per rate (its theoretical arrival time), so a check is a GET and a SET. Keys are namespaced
``vagt:limit:…`` and expire: a rate when it is whole again, a budget when its window ends, a
concurrency slot after ``CONCURRENCY_TTL`` (so a replica that dies holding slots cannot block
its callers for longer than that). Every call has short timeouts; an unreachable Redis raises
LimiterUnavailable and the policy decides whether that fails open or closed. The client
reconnects by itself when Redis returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.limits.base import Counter, LimiterUnavailable, Verdict

CONCURRENCY_TTL = 600  # seconds

# KEYS: the counters. ARGV: now, concurrency ttl, then per counter: kind, limit, period, cost.
# Returns {allowed, index of the deciding counter, remaining, reset, retry_after} (numbers as
# strings: Redis would truncate Lua floats to integers).
_ACQUIRE = """
local now = tonumber(ARGV[1])
local slot_ttl = tonumber(ARGV[2])
local values = {}
local best, best_remaining, best_reset = 0, -1, 0
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 4
  local kind, limit = ARGV[at + 1], tonumber(ARGV[at + 2])
  local period, cost = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local remaining, reset
  if kind == 'rate' then
    local interval = period / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local new = tat + cost * interval
    local late = new - now - period
    if late > 1e-9 then
      local wait = late
      if cost > limit then wait = -1 end
      return {0, i, '0', tostring(tat - now), tostring(wait)}
    end
    values[i] = new
    remaining = math.floor((period - (new - now)) / interval + 1e-9)
    reset = new - now
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or 0) + cost
    if used > limit then
      local wait = period
      if kind == 'concurrency' then wait = 1 end
      return {0, i, '0', tostring(wait), tostring(wait)}
    end
    values[i] = used
    remaining = limit - used
    if kind == 'budget' then reset = period else reset = 0 end
  end
  if kind ~= 'concurrency' and (best_remaining < 0 or remaining < best_remaining) then
    best, best_remaining, best_reset = i, remaining, reset
  end
end
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 4
  local kind, period = ARGV[at + 1], tonumber(ARGV[at + 3])
  if kind == 'rate' then
    redis.call('SET', KEYS[i], tostring(values[i]), 'PX',
               math.ceil((values[i] - now) * 1000) + 1000)
  elseif kind == 'budget' then
    redis.call('SET', KEYS[i], values[i], 'EX', math.ceil(period) + 1)
  else
    redis.call('SET', KEYS[i], values[i], 'EX', slot_ttl)
  end
end
return {1, best, tostring(math.max(best_remaining, 0)), tostring(best_reset), '0'}
"""

# KEYS: the counters. ARGV: per counter: kind, limit, period, refund.
_SETTLE = """
for i = 1, #KEYS do
  local at = (i - 1) * 4
  local kind, limit = ARGV[at + 1], tonumber(ARGV[at + 2])
  local period, refund = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local current = redis.call('GET', KEYS[i])
  if current and refund > 0 then
    local value
    if kind == 'rate' then
      value = tostring(tonumber(current) - refund * period / limit)
    else
      value = math.max(0, tonumber(current) - refund)
    end
    redis.call('SET', KEYS[i], value, 'KEEPTTL')
  end
end
return 1
"""


class RedisLimiter:
    def __init__(self, url: str, *, timeout: float = 0.25, connections: int = 64) -> None:
        # A blocking pool: a burst of requests waits (briefly) for a free connection instead of
        # failing with "too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=connections, timeout=1.0, socket_timeout=timeout,
            socket_connect_timeout=timeout, decode_responses=True)
        self._redis = redis.Redis(connection_pool=pool)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._settle = self._redis.register_script(_SETTLE)

    async def acquire(self, counters: Sequence[Counter], now: float) -> Verdict:
        args: list[str | int | float] = [now, CONCURRENCY_TTL]
        for c in counters:
            args += [c.kind, c.limit, c.period, c.cost]
        try:
            allowed, index, remaining, reset, wait = await self._acquire(
                keys=[c.key for c in counters], args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis: {exc}") from None
        counter = counters[int(index) - 1] if int(index) else None
        retry_after = float("inf") if float(wait) < 0 else float(wait)
        return Verdict(bool(int(allowed)), counter, int(float(remaining)), float(reset),
                       retry_after)

    async def settle(self, counters: Sequence[Counter], refunds: Sequence[int],
                     now: float) -> None:
        args: list[str | int | float] = []
        for c, refund in zip(counters, refunds, strict=True):
            args += [c.kind, c.limit, c.period, refund]
        try:
            await self._settle(keys=[c.key for c in counters], args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis: {exc}") from None

    async def close(self) -> None:
        await self._redis.aclose()
