"""The policy in force: validated, swapped atomically, versioned, and reloaded when its file
changes.

A request takes the current Snapshot when it starts and keeps it to the end, so a reload never
changes the rules under a request in flight. A new policy is parsed and validated completely
before the swap; an invalid one is refused and the old one stays. Every version in force is
recorded (content, who, when) in the gateway's database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import awatch

from gateway.auth.authenticator import Authenticator
from gateway.policy import Policy
from gateway.policy_source import PolicyError, PolicySource, parse_policy
from gateway.rbac import Authorizer
from gateway.redaction.redactor import Redactor
from gateway.store import Database

log = logging.getLogger("vagt.policy")


@dataclass(frozen=True, slots=True)
class Snapshot:
    source: PolicySource
    authorizer: Authorizer
    authenticator: Authenticator
    redactor: Redactor

    @property
    def version(self) -> str:
        return self.source.version


@dataclass(frozen=True, slots=True)
class Change:
    version: str
    author: str
    origin: str
    changed_at: float


class PolicyHistory:
    _SCHEMA = """CREATE TABLE IF NOT EXISTS policy_changes (
        version TEXT NOT NULL, content TEXT NOT NULL, author TEXT NOT NULL,
        origin TEXT NOT NULL, changed_at DOUBLE PRECISION NOT NULL)"""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, db: Database) -> PolicyHistory:
        await db.execute(cls._SCHEMA)
        return cls(db)

    async def record(self, source: PolicySource, author: str) -> None:
        """Record that ``source`` came into force (nothing, if it already was the last one)."""
        last = await self.db.fetch(
            "SELECT version FROM policy_changes ORDER BY changed_at DESC LIMIT 1")
        if last and last[0][0] == source.version:
            return
        await self.db.execute(
            "INSERT INTO policy_changes (version, content, author, origin, changed_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            source.version, source.text, author, source.origin, time.time())

    async def changes(self) -> list[Change]:
        rows = await self.db.fetch("SELECT version, author, origin, changed_at "
                                   "FROM policy_changes ORDER BY changed_at")
        return [Change(*row) for row in rows]

    async def content(self, version: str) -> str:
        """The text of a version, by its id or an unambiguous prefix of it."""
        rows = await self.db.fetch("SELECT DISTINCT version, content FROM policy_changes "
                                   "WHERE version LIKE $1", f"{version}%")
        if len({row[0] for row in rows}) != 1:
            raise KeyError(f"no single policy version matches '{version}'")
        text: str = rows[0][1]
        return text


def write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


# (previous version, the version now in force, problems of a refused file: empty when loaded)
ReloadListener = Callable[[str, str, list[str]], None]


class PolicyStore:
    def __init__(self, path: Path, history: PolicyHistory,
                 authenticator_for: Callable[[Policy], Authenticator],
                 initial: PolicySource, redaction_key: bytes) -> None:
        self.path = path.resolve()
        self.history = history
        self._authenticator_for = authenticator_for
        self._redaction_key = redaction_key
        self.current = self._snapshot(initial)
        self._lock = asyncio.Lock()
        self.on_reload: ReloadListener | None = None  # told of each change of the file

    def _snapshot(self, source: PolicySource) -> Snapshot:
        return Snapshot(source, Authorizer(source), self._authenticator_for(source.policy),
                        Redactor(source.policy.redaction, self._redaction_key))

    async def start(self) -> None:
        await self.history.record(self.current.source, "startup")

    async def apply(self, text: str, *, author: str, write_file: bool) -> Snapshot:
        """Validate ``text`` completely, then swap it in. Raises PolicyError (nothing changes)."""
        source = parse_policy(text, str(self.path))
        async with self._lock:
            if source.version == self.current.version:
                return self.current
            snapshot = self._snapshot(source)
            if write_file:
                await asyncio.to_thread(write_atomically, self.path, text)
            previous, self.current = self.current, snapshot
            await self.history.record(source, author)
        log.info("policy %s → %s (by %s)", previous.version, snapshot.version, author)
        return snapshot

    async def watch(self) -> None:
        """Reload when the file changes; an invalid file is logged and the policy stays."""
        async for _ in awatch(self.path.parent, debounce=200, recursive=False,
                              watch_filter=lambda _, changed: Path(changed) == self.path.resolve()):
            previous = self.current.version
            problems: list[str] = []
            try:
                text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
                await self.apply(text, author="file", write_file=False)
            except PolicyError as exc:
                problems = [str(problem) for problem in exc.problems]
            except OSError as exc:
                problems = [f"cannot read {self.path}: {exc.strerror}"]
            for problem in problems:
                log.error("policy not reloaded: %s", problem)
            if self.on_reload is not None and (problems or self.current.version != previous):
                self.on_reload(previous, self.current.version, problems)
