"""Where audit records rest: the gateway's database, SQLite (embedded, WAL) or PostgreSQL.

Both speak the same SQL through ``gateway.store.Database``, so one class serves both. Each
record is stored as the canonical JSON that was hashed, beside a few indexed columns for search
(verify checks that the two agree). Appends are optimistic: a batch is linked after the head
the writer knows and inserted in one transaction; if another writer got there first, the
primary key (chain, seq) refuses the batch and the writer relinks it after the new head (once
it has checked that head's signature).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chain import (
    INDEXED,
    Anchor,
    ChainReport,
    ChainVerifier,
    Head,
    Sealed,
    Signature,
    StoredRecord,
)
from gateway.audit.query import Query
from gateway.audit.record import Record
from gateway.store import Database

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_records (
        chain TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
        kind TEXT NOT NULL, subject TEXT, action TEXT, model TEXT, decision TEXT NOT NULL,
        status INTEGER, body TEXT NOT NULL, hash TEXT NOT NULL, key_id TEXT, signature TEXT,
        PRIMARY KEY (chain, seq))""",
    "CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time, id)",
    "CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (subject, time)",
    """CREATE TABLE IF NOT EXISTS audit_anchors (
        chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL, time TEXT NOT NULL,
        key_id TEXT NOT NULL, signature TEXT NOT NULL)""",
)
_COLUMNS = ", ".join(INDEXED)
_INSERT = (f"INSERT INTO audit_records (chain, seq, {_COLUMNS}, body, hash, key_id, "  # noqa: S608
           f"signature) VALUES ({', '.join(f'${i}' for i in range(1, len(INDEXED) + 7))})")
PAGE = 2000


def _signature(key: str | None, value: str | None) -> Signature | None:
    return Signature(key, value) if key is not None and value is not None else None


class AuditSink:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, db: Database) -> AuditSink:
        for statement in _SCHEMA:
            await db.execute(statement)
        return cls(db)

    # --- writing ---------------------------------------------------------------------------------

    async def head(self, chain: str) -> tuple[Head, Signature | None]:
        """The chain's last record (or its prune anchor), with the signature on it, if any."""
        rows = await self.db.fetch("SELECT seq, hash, key_id, signature FROM audit_records "
                                   "WHERE chain = $1 ORDER BY seq DESC LIMIT 1", chain)
        if rows:
            return Head(int(rows[0][0]), rows[0][1]), _signature(rows[0][2], rows[0][3])
        anchor = await self.anchor(chain)
        return (anchor.head, anchor.signature) if anchor else (Head(), None)

    async def append(self, sealed: list[Sealed]) -> None:
        """Insert a linked batch, all or nothing; UniqueViolation when another writer took one
        of its seqs first."""
        await self.db.execute_many(_INSERT, [
            (s.record["chain"], s.seq, *(s.record[name] for name in INDEXED), s.body, s.hash,
             s.signature.key_id if s.signature else None,
             s.signature.value if s.signature else None)
            for s in sealed])

    async def known_ids(self, ids: Iterable[str]) -> set[str]:
        wanted, known = list(ids), set()
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            marks = ", ".join(f"${i}" for i in range(1, len(part) + 1))
            rows = await self.db.fetch(
                f"SELECT id FROM audit_records WHERE id IN ({marks})", *part)  # noqa: S608
            known |= {row[0] for row in rows}
        return known

    async def prune(self, anchor: Anchor) -> int:
        """Delete the chain's records up to the anchor's seq, and put the anchor in their
        place; how many records went."""
        chain, seq = anchor.chain, anchor.head.seq
        rows = await self.db.fetch("SELECT COUNT(*) FROM audit_records WHERE chain = $1 AND "
                                   "seq <= $2", chain, seq)
        await self.db.execute(
            "INSERT INTO audit_anchors (chain, seq, hash, time, key_id, signature) VALUES "
            "($1, $2, $3, $4, $5, $6) ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, "
            "hash = excluded.hash, time = excluded.time, key_id = excluded.key_id, "
            "signature = excluded.signature", chain, seq, anchor.head.hash, anchor.time,
            anchor.signature.key_id, anchor.signature.value)
        await self.db.execute("DELETE FROM audit_records WHERE chain = $1 AND seq <= $2",
                              chain, seq)
        return int(rows[0][0])

    async def prunable(self, chain: str, moment: str) -> Head | None:
        """The end of the chain's longest prefix of records older than ``moment`` (None when
        its first record is not): what pruning before ``moment`` may delete."""
        rows = await self.db.fetch(
            "SELECT MIN(seq) FROM audit_records WHERE chain = $1 AND time >= $2", chain, moment)
        keep = rows[0][0]  # the first record to keep; None: every record is older
        before = "" if keep is None else f"AND seq < {int(keep)}"
        rows = await self.db.fetch(
            f"SELECT seq, hash FROM audit_records WHERE chain = $1 {before} "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1", chain)
        return Head(int(rows[0][0]), rows[0][1]) if rows else None

    # --- reading ---------------------------------------------------------------------------------

    async def chains(self) -> list[str]:
        rows = await self.db.fetch("SELECT DISTINCT chain FROM audit_records UNION "
                                   "SELECT chain FROM audit_anchors")
        return sorted(row[0] for row in rows)

    async def anchor(self, chain: str) -> Anchor | None:
        rows = await self.db.fetch("SELECT seq, hash, time, key_id, signature FROM "
                                   "audit_anchors WHERE chain = $1", chain)
        if not rows:
            return None
        seq, digest, moment, key, value = rows[0]
        return Anchor(chain, Head(int(seq), digest), moment, Signature(key, value))

    async def stored(self, chain: str, after: int = 0) -> AsyncIterator[StoredRecord]:
        """The chain's records in seq order, as stored, a page at a time."""
        while True:
            rows = await self.db.fetch(
                f"SELECT seq, {_COLUMNS}, body, hash, key_id, signature FROM "  # noqa: S608
                "audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                chain, after, PAGE)
            for row in rows:
                columns = dict(zip(INDEXED, row[1:-4], strict=True))
                yield StoredRecord(int(row[0]), columns, row[-4], row[-3],
                                   _signature(row[-2], row[-1]))
            if len(rows) < PAGE:
                return
            after = int(rows[-1][0])

    async def verify(self, keys: Mapping[str, Ed25519PublicKey],
                     witnesses: Mapping[str, Head]) -> list[ChainReport]:
        """Every chain checked from its start (or its prune anchor) to its end; ``witnesses``
        are heads kept outside the database (by chain)."""
        reports = []
        for chain in sorted(set(await self.chains()) | set(witnesses)):
            verifier = ChainVerifier(chain, await self.anchor(chain), keys,
                                     witnesses.get(chain))
            async for stored in self.stored(chain):
                if not verifier.feed(stored):
                    break
            reports.append(verifier.finish())
        return reports

    async def get(self, record_id: str) -> Record | None:
        rows = await self.db.fetch("SELECT body FROM audit_records WHERE id = $1", record_id)
        return json.loads(rows[0][0]) if rows else None

    async def search(self, query: Query) -> list[Record]:
        """Records matching ``query``, newest first (or oldest first), one page."""
        where, args = _filters(query)
        if query.after is not None:
            op = "<" if query.order == "desc" else ">"
            args += list(query.after)
            where.append(f"(time {op} ${len(args) - 1} OR (time = ${len(args) - 1} "
                         f"AND id {op} ${len(args)}))")
        args.append(query.limit)
        order = "DESC" if query.order == "desc" else "ASC"
        rows = await self.db.fetch(
            f"SELECT body FROM audit_records {_where(where)} "  # noqa: S608
            f"ORDER BY time {order}, id {order} LIMIT ${len(args)}", *args)
        return [json.loads(row[0]) for row in rows]

    async def newer(self, positions: dict[str, int]) -> list[Record]:
        """Records appended since ``positions`` (chain → last seq seen), in append order;
        updates ``positions``. What `tail -f` follows: seqs grow in commit order, times may
        not (records reach the sink in batches)."""
        found: list[Record] = []
        for chain, last in (await self.positions()).items():
            seen = positions.setdefault(chain, 0)
            if last > seen:
                fresh = await self.db.fetch(
                    "SELECT seq, body FROM audit_records WHERE chain = $1 AND seq > $2 "
                    "ORDER BY seq LIMIT 1000", chain, seen)
                found += [json.loads(row[1]) for row in fresh]
                positions[chain] = int(fresh[-1][0])
        return found

    async def positions(self) -> dict[str, int]:
        """Each chain's last seq."""
        rows = await self.db.fetch("SELECT chain, MAX(seq) FROM audit_records GROUP BY chain")
        return {chain: int(last) for chain, last in rows}


def _filters(query: Query) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("subject", query.subject), ("model", query.model),
                          ("decision", query.decision), ("action", query.action),
                          ("kind", query.kind)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if query.since is not None:
        args.append(query.since)
        where.append(f"time >= ${len(args)}")
    if query.until is not None:
        args.append(query.until)
        where.append(f"time < ${len(args)}")
    return where, args


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""
