"""Where API keys live: SQLite by default, PostgreSQL when configured. Only hashes are stored."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg


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


class KeyStore(Protocol):
    async def add(self, name: str, digest: str, prefix: str, role: str,
                  expires_at: float | None) -> KeyRecord: ...
    async def find(self, digest: str) -> KeyRecord | None: ...
    async def all(self) -> list[KeyRecord]: ...
    async def revoke(self, name: str) -> bool: ...
    async def touch(self, last_used: dict[str, float]) -> None: ...
    async def close(self) -> None: ...


_SELECT = ("SELECT name, role, prefix, created_at, expires_at, revoked_at, last_used_at "
           "FROM api_keys")
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


def _record(row: Any) -> KeyRecord:
    return KeyRecord(*row)


class SQLiteKeyStore:
    """One connection used from worker threads, serialised by a lock; WAL lets the CLI write
    while the gateway reads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)
        self._lock = asyncio.Lock()

    async def _run(self, sql: str, *args: Any) -> list[Any]:
        async with self._lock:
            return await asyncio.to_thread(lambda: self._db.execute(sql, args).fetchall())

    async def add(self, name: str, digest: str, prefix: str, role: str,
                  expires_at: float | None) -> KeyRecord:
        try:
            await self._run("INSERT INTO api_keys (name, digest, prefix, role, created_at, "
                            "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                            name, digest, prefix, role, time.time(), expires_at)
        except sqlite3.IntegrityError:
            raise KeyExists(name) from None
        [row] = await self._run(_SELECT + " WHERE name = ?", name)
        return _record(row)

    async def find(self, digest: str) -> KeyRecord | None:
        rows = await self._run(_SELECT + " WHERE digest = ?", digest)
        return _record(rows[0]) if rows else None

    async def all(self) -> list[KeyRecord]:
        return [_record(r) for r in await self._run(
            _SELECT + " ORDER BY created_at")]

    async def revoke(self, name: str) -> bool:
        rows = await self._run("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND "
                               "revoked_at IS NULL RETURNING name", time.time(), name)
        return bool(rows)

    async def touch(self, last_used: dict[str, float]) -> None:
        for name, when in last_used.items():
            await self._run("UPDATE api_keys SET last_used_at = ? WHERE name = ?", when, name)

    async def close(self) -> None:
        self._db.close()


class PostgresKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str) -> PostgresKeyStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        await pool.execute(_SCHEMA)
        return cls(pool)

    async def add(self, name: str, digest: str, prefix: str, role: str,
                  expires_at: float | None) -> KeyRecord:
        try:
            await self._pool.execute(
                "INSERT INTO api_keys (name, digest, prefix, role, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                name, digest, prefix, role, time.time(), expires_at)
        except asyncpg.UniqueViolationError:
            raise KeyExists(name) from None
        return _record(await self._pool.fetchrow(_SELECT + " WHERE name = $1", name))

    async def find(self, digest: str) -> KeyRecord | None:
        row = await self._pool.fetchrow(
            _SELECT + " WHERE digest = $1", digest)
        return None if row is None else _record(row)

    async def all(self) -> list[KeyRecord]:
        return [_record(r) for r in await self._pool.fetch(
            _SELECT + " ORDER BY created_at")]

    async def revoke(self, name: str) -> bool:
        row = await self._pool.fetchrow(
            "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL "
            "RETURNING name", time.time(), name)
        return row is not None

    async def touch(self, last_used: dict[str, float]) -> None:
        await self._pool.executemany("UPDATE api_keys SET last_used_at = $2 WHERE name = $1",
                                     list(last_used.items()))

    async def close(self) -> None:
        await self._pool.close()


async def open_key_store(database_url: str) -> KeyStore:
    """``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db``."""
    if database_url.startswith("sqlite:///"):
        return SQLiteKeyStore(Path(database_url.removeprefix("sqlite:///")))
    if database_url.startswith(("postgresql://", "postgres://")):
        return await PostgresKeyStore.connect(database_url)
    raise ValueError("database URL must start with sqlite:/// or postgresql://")
