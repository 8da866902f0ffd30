"""Audit log: sustained append rate with hashing, and the latency it adds to a request.

- append rate: 50,000 typical request records submitted as fast as one event loop can,
  through the gateway's path (spool write, then batches chained, hashed, signed and inserted
  by the flusher), until the last is in the sink. SQLite (target ≥ 10,000 records/s) and a
  PostgreSQL this script starts. Side by side, in the same run: the same records inserted into
  the same kind of table with no spool, chain, hash or signature — the floor.
- request path: what a request pays — building its trail, noting the stages, and `finish`
  (the record built and written to the spool) — while the flusher runs; median (target
  ≤ 0.2 ms).

Usage: PYTHONPATH=. python bench/audit.py [--records N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from micro import RESULTS, summary

from gateway.audit.log import AuditLog
from gateway.audit.record import Trail
from gateway.auth.principal import Principal
from gateway.policy import AuditPolicy
from gateway.settings import Settings
from gateway.store import open_database
from tests.servers.postgres import Postgres

PRINCIPAL = Principal("key:billing-service", "api_key", "billing-service", frozenset(),
                      frozenset({"user"}))


def typical(trail: Trail) -> None:
    """What the stages note about a chat request, then its end."""
    trail.principal = PRINCIPAL
    trail.policy_version = "afdc4bcc8069a4d8"
    trail.action, trail.model = "chat", "smollm2:135m"
    trail.rule = "rule 2 (policies/default.yaml:41)"
    trail.pool, trail.hardware = "smollm2:135m/gguf", "cpu"
    trail.prompt_tokens, trail.completion_tokens = 31, 64
    trail.first_token()
    trail.finish(200)


async def append_rate(url: str, data_dir: Path, count: int) -> float:
    db = await open_database(url)
    settings = Settings(data_dir=data_dir, database_url=url, audit_chain="bench")
    log = await AuditLog.open(db, settings, AuditPolicy)
    await log.start()
    started = time.perf_counter()
    for n in range(count):
        typical(Trail("openai", "POST /v1/chat/completions", "10.0.0.7", log.submit))
        if n % 500 == 499:
            await asyncio.sleep(0)  # let the flusher take a batch, as between requests
    await log.flush()
    elapsed = time.perf_counter() - started
    await log.close()
    await db.close()
    return count / elapsed


async def plain_rate(url: str, count: int) -> float:
    """The floor: the same records, JSON-encoded, inserted in batches of 500 into a table with
    the same indexes, without spool, chain, hash or signature."""
    db = await open_database(url)
    await db.execute("CREATE TABLE plain (id TEXT PRIMARY KEY, time TEXT, subject TEXT, "
                     "body TEXT)")
    await db.execute("CREATE INDEX plain_time ON plain (time, id)")
    await db.execute("CREATE INDEX plain_subject ON plain (subject, time)")
    records: list[dict[str, object]] = []
    trail = Trail("openai", "POST /v1/chat/completions", "10.0.0.7", records.append)
    started = time.perf_counter()
    for start in range(0, count, 500):
        records.clear()
        for _ in range(500):
            trail.finished, trail.id = False, f"{start}-{len(records)}"
            typical(trail)
        await db.execute_many("INSERT INTO plain VALUES ($1, $2, $3, $4)", [
            (r["id"], r["time"], r["subject"], json.dumps(r)) for r in records])
    elapsed = time.perf_counter() - started
    await db.close()
    return count / elapsed


async def request_path(data_dir: Path, rounds: int, flushing: bool) -> dict[str, float]:
    """Per request, ~2,000 requests/s; with the flusher writing batches between requests (as in
    the gateway), or idle (the records only reach the spool: the floor)."""
    url = f"sqlite:///{data_dir / 'path.db'}"
    db = await open_database(url)
    log = await AuditLog.open(db, Settings(data_dir=data_dir, database_url=url,
                                           audit_chain="path"), AuditPolicy)
    if flushing:
        await log.start()
    samples = []
    for n in range(rounds + 500):
        started = time.perf_counter_ns()
        typical(Trail("openai", "POST /v1/chat/completions", "10.0.0.7", log.submit))
        if n >= 500:
            samples.append((time.perf_counter_ns() - started) / 1000)
        await asyncio.sleep(0.0005)  # ~2,000 requests/s, the flusher working between them
    await log.close()
    await db.close()
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    results: dict[str, float] = {}
    postgres = Postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name, url in (("sqlite", f"sqlite:///{root / 'audit.db'}"),
                              ("postgresql", postgres.url)):
                results[f"{name}: audit log (spool, chain, hash, signature), records/s"] = \
                    asyncio.run(append_rate(url, root / f"data-{name}", args.records))
                floor_url = (f"sqlite:///{root / 'plain.db'}" if name == "sqlite"
                             else postgres.url)
                results[f"{name}: plain batched insert (the floor), records/s"] = \
                    asyncio.run(plain_rate(floor_url, args.records))
            path = asyncio.run(request_path(root / "data-path", args.rounds, True))
            idle = asyncio.run(request_path(root / "data-idle", args.rounds, False))
    finally:
        postgres.stop()
    machine = "2 cores (see docs/benchmarks.md)"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit.json").write_text(json.dumps(
        {"rates": results, "request_path_us": path, "flusher_idle_us": idle}, indent=2))
    print(f"| case ({machine}) | value |\n|---|---:|")
    for case, value in results.items():
        print(f"| {case} | {value:,.0f} |")
    print(f"| request path: trail + record + spool write, median µs | {path['median_us']:.1f} |")
    print(f"| request path: p90 µs | {path['p90_us']:.1f} |")
    print(f"| request path, flusher idle (the floor): median µs | {idle['median_us']:.1f} |")


if __name__ == "__main__":
    main()
