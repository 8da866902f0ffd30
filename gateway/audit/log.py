"""The audit log the gateway writes: records spooled on the request path, batched into the sink
off it (each batch ending in a signed checkpoint), pruned to the policy's retention.

``submit`` is all a request pays: one write() of its record to the local spool. A flusher task
takes whatever accumulated while the previous batch was being written (group commit: one
transaction per batch, however busy), links it into the chain and appends it to the sink.
When the sink fails, batches stay in the spool and are retried; the policy's
``audit.on_sink_failure`` says whether requests go on meanwhile (buffered) or are refused
(strict). The CLI writes its admin records through ``write``, straight to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chain import Anchor, Head, Sealed, Signer, key_id, link, load_public_key
from gateway.audit.record import Record, admin_record, timestamp
from gateway.audit.sink import AuditSink
from gateway.audit.spool import Spool
from gateway.errors import Unavailable
from gateway.policy import AuditPolicy
from gateway.settings import Settings
from gateway.store import Database, UniqueViolation

log = logging.getLogger("vagt.audit")

BATCH = 5000  # records per transaction
SLICE = 64  # records hashed between two looks at the event loop
MAX_BACKLOG = 200_000  # records waiting for a failing sink before every request is refused
PRUNE_EVERY = 3600.0  # seconds between retention runs
RETRY_AFTER = 1.0  # seconds between attempts while the sink fails
CLOSE_WAIT = 5.0  # seconds a stopping gateway waits for the batch being written


def witnesses(settings: Settings) -> dict[str, Head]:
    """The heads this host's gateway (and CLI) last wrote, by chain."""
    found = {}
    for path in settings.audit_dir.glob("head-*.json"):
        try:
            data = json.loads(path.read_text())
            found[str(data["chain"])] = Head(int(data["seq"]), str(data["hash"]))
        except (OSError, ValueError, KeyError):
            continue
    return found


def trusted_keys(settings: Settings, extra: Iterable[Path] = ()
                 ) -> dict[str, Ed25519PublicKey]:
    """The keys whose checkpoints verify: this host's gateway key (when it has one), the
    settings' ``audit_public_keys`` (other replicas') and ``extra``."""
    own = settings.audit_key
    paths = [*([own] if own.exists() else []), *settings.audit_public_keys, *extra]
    keys = [load_public_key(path.read_bytes()) for path in paths]
    return {key_id(key): key for key in keys}


class AuditUnavailable(Unavailable):
    code = "audit_unavailable"


class ChainTampered(RuntimeError):
    """The sink's chain was extended by someone without this gateway's key."""


class AuditLog:
    def __init__(self, sink: AuditSink, signer: Signer, chain: str, witness: Path,
                 policy: Callable[[], AuditPolicy], spool: Spool | None = None) -> None:
        self.sink = sink
        self.signer = signer
        self.chain = chain
        self.witness = witness
        self.policy = policy
        self.spool = spool
        self.failing: str | None = None  # why the sink refuses batches, while it does
        self._pending: list[Record] = []
        self._backlog: list[tuple[Path | None, list[Record]]] = []  # (segment, records)
        self._synced: set[Path] = set()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._head: Head | None = None
        self._pruned_at: float | None = None  # monotonic; None: not yet in this run
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def open(cls, db: Database, settings: Settings, policy: Callable[[], AuditPolicy],
                   *, spooled: bool = True) -> AuditLog:
        """The log of this host's chain (``settings.audit_chain``), its key and witness in
        ``settings.audit_dir``; ``spooled`` for the gateway, not for one-shot CLI writes."""
        directory = settings.audit_dir
        signer = Signer.open(settings.audit_key)
        # One chain per key by default: the gateway and the CLI beside it (same data directory,
        # same key) share one; replicas (each its own directory and key) never collide.
        chain = settings.audit_chain or f"{socket.gethostname()}-{signer.key_id[:8]}"
        spool = Spool(directory / "spool" / chain) if spooled else None  # adopts leftovers
        return cls(await AuditSink.open(db), signer, chain, directory / f"head-{chain}.json",
                   policy, spool)

    # --- the request path ------------------------------------------------------------------------

    def admit(self) -> None:
        """Refuse a new request (503) when its record could not be kept as the policy wants."""
        if self.failing is not None and self.policy().on_sink_failure == "strict":
            raise AuditUnavailable("the audit log is unavailable, and the policy refuses "
                                   "requests until it recovers", retry_after=5)
        if self.backlog > MAX_BACKLOG:
            raise AuditUnavailable("the audit log's backlog is full; retry later",
                                   retry_after=30)

    def submit(self, record: Record) -> None:
        """Keep ``record``: on the spool's disk before this returns, in the sink soon after.
        Raises AuditUnavailable when it cannot be kept: the request must not be answered."""
        assert self.spool is not None, "the gateway's audit log needs a spool"
        try:
            self.spool.append(record)
        except OSError as exc:
            log.error("cannot spool an audit record: %s", exc)
            raise AuditUnavailable("the audit log cannot record this request",
                                   retry_after=30) from None
        self._pending.append(record)
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._pending) + sum(len(records) for _, records in self._backlog)

    # --- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start flushing, beginning with what an earlier run left in the spool (records
        already in the sink are recognised by their ids and skipped)."""
        assert self.spool is not None
        self._backlog = [(segment, Spool.read(segment)) for segment in self.spool.segments()]
        if self._backlog:
            log.warning("replaying %d spooled audit record(s)", self.backlog)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Flush everything that is spooled; what the sink refuses stays in the spool for the
        next start."""
        if self._task is not None:  # let it finish the batch it is writing, for a while
            self._closing = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=CLOSE_WAIT)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception as exc:
            log.error("audit sink failing at shutdown (%s); %d record(s) stay in the spool",
                      exc, self.backlog)
        finally:
            if self.spool is not None:
                self.spool.close()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self.flush()  # whatever accumulated meanwhile: one batch
                await self._housekeeping()
            except Exception as exc:  # the sink failed: keep the backlog, retry after a pause
                if self.failing is None:
                    log.error("audit sink failing (%s); %d record(s) kept in the spool", exc,
                              self.backlog)
                self.failing = str(exc) or type(exc).__name__
                self._sync_backlog()
                await asyncio.sleep(RETRY_AFTER)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()

    async def flush(self) -> None:
        """Append everything spooled so far to the sink."""
        async with self._flushing:  # the flusher task, and anyone who must see it all written
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            assert self.spool is not None
            self._backlog.append((self.spool.seal(), self._pending))
            self._pending = []
        while self._backlog:
            segment, records = self._backlog[0]
            for start in range(0, len(records), BATCH):
                await self._commit(records[start:start + BATCH])
            if segment is not None:
                segment.unlink(missing_ok=True)
                self._synced.discard(segment)
            self._backlog.pop(0)
        if self.failing is not None:
            log.warning("audit sink recovered")
            self.failing = None

    def _sync_backlog(self) -> None:
        """A failing sink may fail for long: make its backlog survive the machine, too."""
        segments = [s for s, _ in self._backlog if s is not None and s not in self._synced]
        with contextlib.suppress(OSError):
            Spool.sync(segments)
            self._synced.update(segments)

    async def write(self, records: list[Record]) -> None:
        """Append now, without the spool (the CLI's admin records)."""
        await self._commit(records)

    async def _commit(self, records: list[Record]) -> None:
        while records:
            head = self._head or await self._trusted_head()
            sealed, end = await self._link(records, head)
            try:
                await self.sink.append(sealed)
            except UniqueViolation:
                # Another writer took these seqs (relink after its head), or these records are
                # in already (a replay): drop those, retry the rest.
                self._head = None
                known = await self.sink.known_ids(r["id"] for r in records)
                records = [r for r in records if r["id"] not in known]
                continue
            self._head = end
            self._write_witness(end)
            return

    async def _link(self, records: list[Record], head: Head) -> tuple[list[Sealed], Head]:
        """Chain and hash a batch a slice at a time, letting requests run in between (a big
        batch must not hold the event loop); the last record carries the signed checkpoint."""
        sealed: list[Sealed] = []
        for start in range(0, len(records), SLICE):
            part, head = link(records[start:start + SLICE], self.chain, head)
            sealed += part
            await asyncio.sleep(0)
        sealed[-1] = self.signer.signed(sealed[-1], self.chain)
        return sealed, head

    async def _trusted_head(self) -> Head:
        """The chain's head in the sink, once its signature shows that a holder of this key
        wrote it: never link (and so sign) after records someone appended without the key."""
        head, signature = await self.sink.head(self.chain)
        if head.seq == 0:
            return head
        keys = {self.signer.key_id: self.signer.public_key}
        problem = "it is not signed" if signature is None else \
            signature.problem(keys, self.chain, head)
        if problem is not None:
            raise ChainTampered(f"audit chain {self.chain!r} cannot be extended after seq "
                                f"{head.seq}: {problem}; run `vagt audit verify`")
        return head

    def _write_witness(self, head: Head) -> None:
        """The chain's head, on this host's disk: a truncation of the sink after the last
        checkpoint cannot hide from it."""
        temporary = self.witness.with_suffix(".tmp")
        temporary.write_text(json.dumps({"chain": self.chain, "seq": head.seq,
                                         "hash": head.hash}))
        os.replace(temporary, self.witness)

    # --- retention ------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        retention = self.policy().retention
        if retention is not None and (self._pruned_at is None
                                      or time.monotonic() - self._pruned_at >= PRUNE_EVERY):
            self._pruned_at = time.monotonic()
            removed = await self.prune(time.time() - retention)
            if removed:
                self.submit(admin_record(subject="vagt", action="audit:prune", target=None,
                                         api="gateway",
                                         detail={"removed": removed, "reason": "retention"}))

    async def prune(self, before: float) -> dict[str, int]:
        """Delete every chain's records older than ``before`` (unix seconds), leaving an anchor
        signed with this key where each chain now begins, so what remains still verifies."""
        removed: dict[str, int] = {}
        moment = timestamp(before)
        for chain in await self.sink.chains():
            end = await self.sink.prunable(chain, moment)
            if end is None:
                continue
            anchor = Anchor(chain, end, timestamp(), self.signer.sign(chain, end))
            count = await self.sink.prune(anchor)
            if count:
                removed[chain] = count
        return removed
