"""Where API keys live (the gateway's database: SQLite or PostgreSQL). Only hashes are stored."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.store import Database, Row, UniqueViolation


class KeyExists(Exception):
    pass


@dataclass(frozen=True, slots=True)
class KeyRecord:
    name: str
    role: str
    prefix: str  # the first characters of the secret, to recognise it in listings
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION
)"""
_SELECT = ("SELECT name, role, prefix, created_at, expires_at, revoked_at, last_used_at "
           "FROM api_keys")


def _record(row: Row) -> KeyRecord:
    return KeyRecord(*row)


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, db: Database) -> KeyStore:
        await db.execute(_SCHEMA)
        return cls(db)

    async def add(self, name: str, digest: str, prefix: str, role: str,
                  expires_at: float | None) -> KeyRecord:
        try:
            await self.db.execute(
                "INSERT INTO api_keys (name, digest, prefix, role, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                name, digest, prefix, role, time.time(), expires_at)
        except UniqueViolation:
            raise KeyExists(name) from None
        [row] = await self.db.fetch(_SELECT + " WHERE name = $1", name)
        return _record(row)

    async def find(self, digest: str) -> KeyRecord | None:
        rows = await self.db.fetch(_SELECT + " WHERE digest = $1", digest)
        return _record(rows[0]) if rows else None

    async def all(self) -> list[KeyRecord]:
        return [_record(row) for row in await self.db.fetch(_SELECT + " ORDER BY created_at")]

    async def revoke(self, name: str) -> bool:
        rows = await self.db.fetch("UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND "
                                   "revoked_at IS NULL RETURNING name", time.time(), name)
        return bool(rows)

    async def touch(self, last_used: dict[str, float]) -> None:
        for name, when in last_used.items():
            await self.db.execute("UPDATE api_keys SET last_used_at = $1 WHERE name = $2",
                                  when, name)
