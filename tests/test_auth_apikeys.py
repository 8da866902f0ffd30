"""API keys: the secret's form, the stores (SQLite and a real PostgreSQL), the CLI."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest

from gateway.auth.apikeys import APIKeyAuthenticator, create_key, digest
from gateway.auth.keystore import KeyExists, KeyStore
from gateway.store import open_database
from tests.conftest import Server, run_vagt
from tests.servers.postgres import Postgres

T = TypeVar("T")


def fresh_database(postgres: Postgres) -> str:
    """The URL of a new, empty database on the throwaway server."""
    database = f"keys_{time.time_ns()}"

    async def create() -> None:
        connection = await asyncpg.connect(postgres.url)
        await connection.execute(f'CREATE DATABASE "{database}"')
        await connection.close()

    asyncio.run(create())
    return postgres.url.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.db'}"
    return fresh_database(request.getfixturevalue("postgres"))


def in_store(url: str, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await open_database(url)
        try:
            return await work(await KeyStore.open(db))
        finally:
            await db.close()
    return asyncio.run(run())


def test_secret_form() -> None:
    async def make(store: KeyStore) -> str:
        return (await create_key(store, "svc", "user")).secret
    secrets = {in_store("sqlite:///:memory:", make) for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert re.fullmatch(r"vagt_[A-Za-z0-9_-]{43,}", secret)


def test_store_life_cycle(store_url: str) -> None:
    async def run(store: KeyStore) -> None:
        created = await create_key(store, "svc-a", "user", expires_at=time.time() + 60)
        assert created.record.name == "svc-a"
        found = await store.find(digest(created.secret))
        assert found is not None
        assert found.role == "user"
        assert found.usable(time.time())
        assert not found.usable(time.time() + 120)  # expired later
        assert await store.find(digest("vagt_unknown")) is None
        with pytest.raises(KeyExists):
            await create_key(store, "svc-a", "admin")
        await store.touch({"svc-a": 1234.5})
        assert assert_single(await store.all()).last_used_at == 1234.5
        assert await store.revoke("svc-a")
        assert not await store.revoke("svc-a")  # already revoked
        again = await store.find(digest(created.secret))
        assert again is not None
        assert not again.usable(time.time())

    in_store(store_url, run)


def assert_single(records: list[T]) -> T:
    assert len(records) == 1
    return records[0]


def test_authenticator_caches_then_sees_revocation(store_url: str) -> None:
    async def run(store: KeyStore) -> None:
        keys = APIKeyAuthenticator(store, cache_ttl=0.2)
        created = await create_key(store, "svc-b", "user")
        identity = await keys.identify(created.secret)
        assert identity is not None
        assert identity.subject == "key:svc-b"
        assert identity.api_key_role == "user"
        await store.revoke("svc-b")
        assert await keys.identify(created.secret) is not None  # within the cache TTL
        await asyncio.sleep(0.25)
        assert await keys.identify(created.secret) is None
        await keys.close()
        record = assert_single(await store.all())
        assert record.last_used_at is not None  # recorded in the background

    in_store(store_url, run)


def test_gateway_and_cli_on_postgresql(start_server: type[Server], data_dir: Path,
                                       postgres: Postgres) -> None:
    url = fresh_database(postgres)
    server = start_server(data_dir, "--threads", "1", env={"VAGT_DATABASE_URL": url})
    created = run_vagt("keys", "create", "--name", "pg-svc", "--role", "user",
                       "--database-url", url)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/tags", headers={"x-api-key": secret}).status_code == 200
        assert server.key  # the first admin key, created in PostgreSQL
        assert http.get("/api/tags", headers={"x-api-key": server.key}).status_code == 200
    listing = run_vagt("keys", "list", "--database-url", url).stdout
    assert "pg-svc" in listing
    assert secret not in listing


def test_cli_errors() -> None:
    bad = run_vagt("keys", "create", "--name", "x", "--role", "user", "--expires", "soon",
                   "--database-url", "sqlite:///:memory:")
    assert bad.returncode == 1
    assert "invalid duration" in bad.stderr
    missing = run_vagt("keys", "revoke", "ghost", "--database-url", "sqlite:///:memory:")
    assert missing.returncode == 1
    assert "no active key named 'ghost'" in missing.stderr
