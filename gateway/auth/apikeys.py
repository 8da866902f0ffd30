"""API keys for service accounts: ``vagt_`` + 32 random bytes, URL-safe; only a hash is stored.

The secret has 256 bits of entropy, so a plain SHA-256 is the right hash: nothing to brute-force,
and a lookup by hash is one indexed read. Verified keys are trusted for ``cache_ttl`` seconds, so
a revocation made by the CLI takes effect within that time; last-used times are written in the
background, at most once a minute per key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from gateway.auth.keystore import KeyRecord, KeyStore
from gateway.auth.principal import Identity

PREFIX = "vagt_"
_TOUCH_EVERY = 60.0
log = logging.getLogger("vagt.auth.apikeys")


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return value.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: KeyRecord
    secret: str  # shown once, never stored


async def create_key(store: KeyStore, name: str, role: str,
                     expires_at: float | None = None) -> CreatedKey:
    secret = new_secret()
    record = await store.add(name, digest(secret), secret[:12], role, expires_at)
    return CreatedKey(record, secret)


class APIKeyAuthenticator:
    def __init__(self, store: KeyStore, cache_ttl: float) -> None:
        self.store = store
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, KeyRecord]] = {}
        self._touched: dict[str, float] = {}
        self._pending: dict[str, float] = {}
        self._flush: asyncio.Task[None] | None = None

    async def identify(self, secret: str) -> Identity | None:
        """The key's identity, or None for an unknown, revoked or expired key."""
        now = time.time()
        key = digest(secret)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            record: KeyRecord | None = cached[1]
        else:
            record = await self.store.find(key)
            if record is not None:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (now + self.cache_ttl, record)
        if record is None or not record.usable(now):
            return None
        self._note_use(record.name, now)
        return Identity(subject=f"key:{record.name}", method="api_key",
                        display_name=record.name, api_key_role=record.role)

    def _note_use(self, name: str, now: float) -> None:
        if now - self._touched.get(name, 0.0) < _TOUCH_EVERY:
            return
        self._touched[name] = now
        self._pending[name] = now
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._write_last_used())

    async def _write_last_used(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            await self.store.touch(pending)
        except Exception:  # a failed bookkeeping write must never fail a request
            log.warning("could not record when %d API key(s) were last used", len(pending))

    async def close(self) -> None:
        if self._flush is not None:
            await asyncio.gather(self._flush, return_exceptions=True)
