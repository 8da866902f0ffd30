"""When the audit database goes down under a live gateway: `buffered` keeps serving with the
records waiting in the spool (and they arrive, chained, when it is back); `strict` refuses
requests until it recovers — and records the refusals too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.servers.postgres import Postgres

POLICY = """version: 1
identity:
  api_keys: {cache_ttl: 300}   # a key verified before the outage stays trusted through it
roles:
  admin: {members: {api_key_roles: [admin]}}
rules:
  - roles: [admin]
    allow: [models:list, audit:read]
audit:
  on_sink_failure: %s
"""


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of this test's own, since the test stops it."""
    server = Postgres()
    yield server
    server.stop()


def gateway(mode: str, data_dir: Path, postgres: Postgres, tmp_path: Path) -> Server:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % mode)
    return Server(data_dir, "--workers", "1", "--threads", "1", policy=policy,
                  env={"VAGT_DATABASE_URL": postgres.url})


def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_buffered_keeps_serving_and_catches_up(start_server: type[Server], data_dir: Path,
                                               own_postgres: Postgres, tmp_path: Path) -> None:
    server = gateway("buffered", data_dir, own_postgres, tmp_path)
    try:
        client: httpx.Client = server.client
        assert client.get("/v1/models").status_code == 200
        own_postgres.halt()
        during = [client.get("/v1/models") for _ in range(5)]
        assert [r.status_code for r in during] == [200] * 5
        assert server.logged("audit sink failing", timeout=10)
        spool = data_dir / "audit" / "spool"
        assert any(p.stat().st_size for p in spool.rglob("*.jsonl"))  # waiting on disk
        own_postgres.start()
        assert server.logged("audit sink recovered", timeout=15)
        verified = client.get("/admin/audit/verify").json()
        assert verified["ok"] is True
        for response in during:
            record = client.get(f"/admin/audit/records/{response.headers['x-request-id']}")
            assert record.status_code == 200
            assert record.json()["decision"] == "allowed"
    finally:
        server.stop()


def test_strict_refuses_while_the_sink_is_down(start_server: type[Server], data_dir: Path,
                                               own_postgres: Postgres, tmp_path: Path) -> None:
    server = gateway("strict", data_dir, own_postgres, tmp_path)
    try:
        client: httpx.Client = server.client
        assert client.get("/v1/models").status_code == 200
        own_postgres.halt()
        client.get("/v1/models")  # its record is what finds the sink down
        assert server.logged("audit sink failing", timeout=10)
        refused = client.get("/v1/models")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "audit_unavailable"
        assert "Retry-After" in refused.headers
        own_postgres.start()
        assert server.logged("audit sink recovered", timeout=15)
        until(lambda: client.get("/v1/models").status_code == 200)
        record = client.get(f"/admin/audit/records/{refused.headers['x-request-id']}").json()
        assert (record["decision"], record["status"], record["error"]) == (
            "failed", 503, "audit_unavailable")
        assert client.get("/admin/audit/verify").json()["ok"] is True
    finally:
        server.stop()
