"""The database under everything with state: SQLite by default, PostgreSQL when configured.

One small async interface, written once: SQL uses PostgreSQL's numbered ``$1`` parameters, which
SQLite also understands once spelled ``?1``. SQLite runs on a worker thread behind a lock, in WAL
mode so the CLI can write while the gateway reads; PostgreSQL goes through an asyncpg pool.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg

Row = tuple[Any, ...]
T = TypeVar("T")
_PARAMETER = re.compile(r"\$(\d+)")


class UniqueViolation(Exception):
    """An insert collided with an existing unique value."""


class Database(Protocol):
    async def execute(self, sql: str, *args: Any) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """``sql`` once per row, all in one transaction: every row is written, or none."""
    async def close(self) -> None: ...


@contextmanager
def _unique_violations() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise UniqueViolation(str(exc)) from None
        raise


class SQLiteDatabase:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = asyncio.Lock()

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        with _unique_violations():
            return self._db.execute(_PARAMETER.sub(r"?\1", sql), args).fetchall()

    def _run_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        with _unique_violations(), self._db:  # the connection as context: commit or roll back
            self._db.execute("BEGIN")
            self._db.executemany(_PARAMETER.sub(r"?\1", sql), rows)

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """``work`` on a worker thread, one at a time. The lock is held until the thread is done
        even when the caller is cancelled: the thread cannot be, and the connection is not for
        two at once."""
        async with self._lock:
            done = asyncio.ensure_future(asyncio.to_thread(work, *args))
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                await asyncio.wait([done])
                raise

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._in_thread(self._run_many, sql, list(rows))

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._in_thread(self._run, sql, args)

    async def close(self) -> None:
        async with self._lock:  # not while a statement runs on a worker thread
            self._db.close()


class PostgresDatabase:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str) -> PostgresDatabase:
        return cls(await asyncpg.create_pool(url, min_size=1, max_size=4))

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            return [tuple(record) for record in await self._pool.fetch(sql, *args)]
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.executemany(sql, rows)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None

    async def close(self) -> None:
        await self._pool.close()


async def open_database(url: str) -> Database:
    """``sqlite:///path/to/file.db`` (``sqlite:///:memory:``) or ``postgresql://…``."""
    if url.startswith("sqlite:///"):
        return SQLiteDatabase(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.connect(url)
    raise ValueError("the database URL must start with sqlite:/// or postgresql://")
