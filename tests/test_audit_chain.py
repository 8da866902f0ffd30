"""The audit log's chain on real SQLite and a real PostgreSQL: appends, replay from the spool,
prune, and every kind of tampering caught by verify at the first record it touches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.audit.chain import canonical, digest
from gateway.audit.log import AuditLog, trusted_keys, witnesses
from gateway.audit.query import Query
from gateway.audit.record import admin_record
from gateway.policy import AuditPolicy
from gateway.settings import Settings
from gateway.store import Database, open_database
from tests.servers.postgres import Postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vagt.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, audit_chain="gw-1")


def record(n: int, subject: str = "alice") -> dict[str, object]:
    return admin_record(subject=subject, action="keys:create", target=f"key-{n}",
                        detail={"n": n})


class Harness:
    """A spooled audit log on the test's database, as the gateway runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Harness:
        self.db: Database = await open_database(self.settings.store_url)
        self.log = await AuditLog.open(self.db, self.settings, AuditPolicy)
        await self.log.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.log.close()
        await self.db.close()

    async def verify(self) -> list[dict[str, object]]:
        reports = await self.log.sink.verify(trusted_keys(self.settings),
                                             witnesses(self.settings))
        return [r.as_dict() for r in reports]


async def filled(settings: Settings, count: int = 20) -> list[dict[str, object]]:
    async with Harness(settings) as h:
        for n in range(count):
            h.log.submit(record(n))
            if n % 7 == 6:
                await h.log.flush()  # several batches, several signed checkpoints
        await h.log.flush()
        return await h.verify()


def test_records_are_chained_signed_and_verify(settings: Settings) -> None:
    async def run() -> None:
        reports = await filled(settings)
        assert reports == [{"chain": "gw-1", "ok": True, "records": 20, "first_seq": 1,
                            "last_seq": 20, "signed_seq": 20, "broken_at": None,
                            "problem": None}]
        async with Harness(settings) as h:
            stored = [s async for s in h.log.sink.stored("gw-1")]
            assert [s.seq for s in stored] == list(range(1, 21))
            # batch ends carry the signatures: 7, 14, 20
            assert [s.seq for s in stored if s.signature] == [7, 14, 20]
            body = json.loads(stored[4].body)
            assert body["prev"] == stored[3].hash
            assert digest(canonical(body)) == stored[4].hash
            found = await h.log.sink.search(Query(subject="alice", limit=5))
            assert [r["target"] for r in found] == ["key-19", "key-18", "key-17", "key-16",
                                                     "key-15"]

    asyncio.run(run())


async def tamper(settings: Settings, *statements: str) -> list[dict[str, object]]:
    async with Harness(settings) as h:
        for statement in statements:
            await h.db.execute(statement)
        return await h.verify()


@pytest.mark.parametrize(("statements", "broken_at", "problem"), [
    # modification of the hashed content
    (["UPDATE audit_records SET body = REPLACE(body, '\"key-5\"', '\"key-X\"') WHERE seq = 6"],
     6, "its content does not match its hash"),
    # modification of an indexed column only (what search sees)
    (["UPDATE audit_records SET subject = 'mallory' WHERE seq = 9"], 9,
     "column 'subject' differs"),
    # deletion in the middle
    (["DELETE FROM audit_records WHERE seq = 10"], 11, "seq 10 is missing"),
    # deletion at the start, without a prune anchor
    (["DELETE FROM audit_records WHERE seq <= 3"], 4, "records before it were removed"),
    # reordering: two records swap places
    (["UPDATE audit_records SET seq = -1 WHERE seq = 12",
      "UPDATE audit_records SET seq = 12 WHERE seq = 13",
      "UPDATE audit_records SET seq = 13 WHERE seq = -1"], 12, "was moved"),
    # truncation inside the last batch: what is left of it has lost its signed checkpoint
    (["DELETE FROM audit_records WHERE seq >= 18"], 15, "carry no signed checkpoint"),
    # truncation back to an earlier checkpoint (the witness on the gateway's disk catches it)
    (["DELETE FROM audit_records WHERE seq > 14"], 15, "were cut from the end"),
])
def test_verify_finds_the_first_tampered_record(settings: Settings, statements: list[str],
                                                 broken_at: int, problem: str) -> None:
    asyncio.run(filled(settings))
    [report] = asyncio.run(tamper(settings, *statements))
    assert report["ok"] is False
    assert report["broken_at"] == broken_at
    assert problem in str(report["problem"])


def test_insertion_with_recomputed_hashes_is_caught(settings: Settings) -> None:
    """An attacker who knows the scheme (but not the key) inserts a record and rehashes the
    rest of the chain: every hash and link is right, the signatures are not."""
    asyncio.run(filled(settings))

    async def insert() -> list[dict[str, object]]:
        async with Harness(settings) as h:
            rows = await h.db.fetch("SELECT seq, body FROM audit_records ORDER BY seq")
            bodies = [json.loads(row[1]) for row in rows]
            forged = {**bodies[4], "id": "forged", "subject": "mallory"}
            bodies.insert(5, forged)
            await h.db.execute("DELETE FROM audit_records")
            prev = bodies[0]["prev"]
            for seq, body in enumerate(bodies, start=1):
                body = {**body, "seq": seq, "prev": prev}
                text = canonical(body)
                prev = digest(text)
                await h.db.execute(
                    "INSERT INTO audit_records (chain, seq, id, time, kind, subject, action, "
                    "model, decision, status, body, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                    "$8, $9, $10, $11, $12)", "gw-1", seq, body["id"], body["time"],
                    body["kind"], body["subject"], body["action"], body["model"],
                    body["decision"], body["status"], text.decode(), prev)
            return await h.verify()

    [report] = asyncio.run(insert())
    assert report["ok"] is False
    # the first evidence met walking the chain: the gateway's witness of seq 20
    assert report["problem"] == "record 20 differs from the head the gateway wrote"
    (settings.audit_dir / "head-gw-1.json").unlink()  # without the witness: the signatures
    [report] = asyncio.run(tamper(settings))
    assert report["problem"] == ("records 1-21 carry no signed checkpoint: they were appended "
                                 "without the gateway's key")


def test_appending_without_the_key_is_caught_and_never_signed_over(settings: Settings) -> None:
    asyncio.run(filled(settings))

    async def append_forged() -> tuple[list[dict[str, object]], str | None]:
        async with Harness(settings) as h:
            rows = await h.db.fetch("SELECT hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            body = {**record(99, "mallory"), "chain": "gw-1", "seq": 21, "prev": rows[0][0]}
            text = canonical(body)
            await h.db.execute(
                "INSERT INTO audit_records (chain, seq, id, time, kind, subject, action, model, "
                "decision, status, body, hash) VALUES ($1, 21, $2, $3, $4, $5, $6, NULL, $7, "
                "$8, $9, $10)", "gw-1", body["id"], body["time"], body["kind"],
                body["subject"], body["action"], body["decision"], body["status"],
                text.decode(), digest(text))
            reports = await h.verify()
            # The gateway (which believes seq 20 is its head) must not link after it.
            h.log.submit(record(100))
            await asyncio.sleep(0.5)
            return reports, h.log.failing

    reports, failing = asyncio.run(append_forged())
    assert reports[0]["broken_at"] == 21
    assert "carry no signed checkpoint" in str(reports[0]["problem"])
    assert failing is not None
    assert "cannot be extended after seq 21" in failing


def test_spooled_records_survive_a_crash_and_are_replayed_once(settings: Settings) -> None:
    spool = settings.audit_dir / "spool" / "gw-1"

    async def crash() -> None:
        h = await Harness(settings).__aenter__()
        await h.log.close()  # a clean stop first: nothing stays in the spool
        assert not list(spool.rglob("*.jsonl"))
        # Now a "crash": records reach the spool, the flusher never runs.
        h.log = await AuditLog.open(h.db, settings, AuditPolicy)
        for n in range(5):
            h.log.submit(record(n))
        # one of them made it to the sink before the crash
        await h.log._commit([json.loads(next(spool.rglob("*.jsonl")).read_text().splitlines()[0])])
        with (next(spool.rglob("*.jsonl"))).open("a") as torn:
            torn.write('{"id": "torn-wri')  # a line cut short by the crash
        h.log.spool.close()  # type: ignore[union-attr]
        await h.db.close()

    asyncio.run(crash())

    async def restart() -> tuple[list[str], list[dict[str, object]]]:
        async with Harness(settings) as h:
            await h.log.flush()
            found = await h.log.sink.search(Query(limit=100, order="asc"))
            return [str(r["target"]) for r in found], await h.verify()

    targets, reports = asyncio.run(restart())
    assert targets == [f"key-{n}" for n in range(5)]
    assert reports[0]["ok"] is True
    assert not list(spool.rglob("*.jsonl"))


def test_a_failing_sink_keeps_records_in_the_spool_until_it_recovers(
        settings: Settings) -> None:
    async def run() -> None:
        async with Harness(settings) as h:
            h.log.submit(record(0))
            await h.log.flush()
            original = h.log.sink.append

            async def down(*args: object) -> None:
                raise ConnectionError("database unreachable")

            h.log.sink.append = down  # type: ignore[method-assign]
            for n in range(1, 4):
                h.log.submit(record(n))
            await asyncio.sleep(0.3)
            assert h.log.failing == "database unreachable"
            assert h.log.backlog == 3
            assert len(h.log.spool.segments()) == 1  # type: ignore[union-attr]
            h.log.admit()  # buffered (the default): requests go on
            h.log.sink.append = original  # type: ignore[method-assign]
            await asyncio.sleep(1.5)
            assert h.log.failing is None
            assert h.log.backlog == 0
            assert len(await h.log.sink.search(Query(limit=10))) == 4
            assert (await h.verify())[0]["ok"] is True

    asyncio.run(run())


def test_prune_leaves_a_signed_anchor_so_the_rest_verifies(settings: Settings) -> None:
    asyncio.run(filled(settings))

    async def prune() -> tuple[dict[str, int], list[dict[str, object]], list[dict[str, object]]]:
        async with Harness(settings) as h:
            eleventh = (await h.db.fetch("SELECT time FROM audit_records WHERE seq = 11"))[0][0]
            from gateway.audit.query import parse_moment
            removed = await h.log.prune(parse_moment(eleventh))
            after = await h.verify()
            # a forged anchor (moved forward, signature kept) is caught
            await h.db.execute("UPDATE audit_anchors SET seq = 12")
            await h.db.execute("DELETE FROM audit_records WHERE seq <= 12")
            return removed, after, await h.verify()

    removed, after, forged = asyncio.run(prune())
    assert removed == {"gw-1": 10}
    assert after[0]["ok"] is True
    assert after[0]["first_seq"] == 11
    assert forged[0]["ok"] is False
    assert "prune anchor is not valid" in str(forged[0]["problem"])


def test_two_writers_on_one_chain_interleave_without_forking(settings: Settings) -> None:
    """The CLI writes admin records on the gateway's chain while the gateway writes: the primary
    key makes the later writer relink after the other's head."""
    async def run() -> list[dict[str, object]]:
        async with Harness(settings) as gateway:
            db = await open_database(settings.store_url)
            cli = await AuditLog.open(db, settings, AuditPolicy, spooled=False)
            for n in range(10):
                gateway.log.submit(record(n))
                await cli.write([record(100 + n, "root")])
                if n % 3 == 0:
                    await gateway.log.flush()
            await gateway.log.flush()
            await db.close()
            return await gateway.verify()

    [report] = asyncio.run(run())
    assert report["ok"] is True
    assert report["records"] == 20


def test_each_process_spools_alone_and_adopts_only_what_the_dead_left(tmp_path: Path) -> None:
    from gateway.audit.spool import Spool

    root = tmp_path / "spool"
    first, second = Spool(root), Spool(root)  # two gateways on one data directory
    first.append(record(1))
    assert second.segments() == []  # a live owner's segments are never taken
    first.close()  # stopped with a record still spooled
    second.close()  # nothing spooled: its directory goes
    third = Spool(root)
    [adopted] = third.segments()
    assert [r["target"] for r in Spool.read(adopted)] == ["key-1"]
    assert [p.name for p in root.iterdir()] == [third.directory.name]
    third.close()
