"""Limits shared by two gateway replicas through a real Redis: exact under concurrent load,
concurrency held across both, and Redis failures handled as the policy says."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.conftest import MODEL, Server, open_policy, write_catalogue
from tests.servers.redis import RedisServer

POLICY = open_policy(("admin", "user"), """limits:
  on_store_failure: FAILURE
  roles:
    user:
      requests: 12/hour
      concurrent: 2
""")


def replicas(tmp: Path, model_path: Path, redis_url: str, failure: str) -> list[Server]:
    """Two gateways sharing one database (keys) and one Redis (limits)."""
    write_catalogue(tmp / "data", model_path)
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY.replace("FAILURE", failure))
    env = {"VAGT_LIMITS_URL": redis_url, "VAGT_METRICS": "true"}
    first = Server(tmp / "data", "--workers", "2", "--threads", "1", "--max-queue", "64",
                   policy=policy, env=env)
    try:
        second = Server(tmp / "data", "--workers", "2", "--threads", "1", "--max-queue", "64",
                        policy=policy, env=env)
    except BaseException:
        first.stop()  # a replica that failed to start must not leave the other running
        raise
    return [first, second]


@pytest.fixture
def cluster(tmp_path: Path, model_path: Path, redis_server: RedisServer
            ) -> Iterator[tuple[list[Server], str]]:
    sync_redis.Redis.from_url(redis_server.url).flushdb()
    servers = replicas(tmp_path, model_path, redis_server.url, "closed")
    secret = servers[0].create_key("app", "user")
    yield servers, secret
    for server in servers:
        server.stop()


def chat(server: Server, secret: str, tokens: int = 1) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {secret}"},
                      json={"model": MODEL, "max_tokens": tokens,
                            "messages": [{"role": "user", "content": "hi"}]})


def test_two_replicas_admit_exactly_the_limit(cluster: tuple[list[Server], str]) -> None:
    servers, secret = cluster
    admitted: list[int] = []
    refusals: list[str] = []
    lock = threading.Lock()

    def client(server: Server) -> None:
        for _ in range(60):  # until the rate, not just a busy slot, refuses
            response = chat(server, secret)
            with lock:
                if response.status_code == 200:
                    admitted.append(1)
                    continue
                assert response.status_code == 429, response.text
                refusals.append(response.json()["error"]["message"])
                if "requests (12/hour" in refusals[-1]:
                    return

    threads = [threading.Thread(target=client, args=(servers[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(admitted) == 12  # exactly the 12/hour, across both replicas
    assert sum("requests (12/hour" in m for m in refusals) == 4  # every client saw the rate


def test_concurrency_holds_across_replicas(cluster: tuple[list[Server], str]) -> None:
    servers, secret = cluster
    results: list[int] = []
    long_requests = [threading.Thread(target=lambda s=s: results.append(
        chat(s, secret, tokens=150).status_code)) for s in servers]
    for thread in long_requests:
        thread.start()
    time.sleep(0.8)  # both long requests are running, one on each replica
    third = chat(servers[0], secret)
    assert third.status_code == 429
    assert "concurrent requests (2, roles)" in third.json()["error"]["message"]
    for thread in long_requests:
        thread.join(timeout=120)
    assert results == [200, 200]
    assert chat(servers[1], secret).status_code == 200  # both slots came back


def test_redis_down_fails_closed_then_recovers(cluster: tuple[list[Server], str],
                                               redis_server: RedisServer) -> None:
    servers, secret = cluster
    assert chat(servers[0], secret).status_code == 200
    redis_server.stop()
    try:
        refused = chat(servers[0], secret)
        assert refused.status_code == 503  # fail closed, at once (bounded timeouts)
        assert refused.elapsed.total_seconds() < 5
        assert servers[0].logged("failing closed")
        metrics = httpx.get(f"{servers[0].url}/metrics").text
        assert 'vagt_limit_store_errors_total{outcome="refused"} 1.0' in metrics
    finally:
        redis_server.start()
    assert chat(servers[1], secret).status_code == 200  # recovered without a restart


def test_redis_down_fails_open_when_the_policy_says_so(
    tmp_path: Path, model_path: Path, redis_server: RedisServer,
) -> None:
    servers = replicas(tmp_path, model_path, redis_server.url, "open")
    secret = servers[0].create_key("app", "user")
    try:
        redis_server.stop()
        try:
            assert chat(servers[0], secret).status_code == 200
            assert servers[0].logged("failing open")
            metrics = httpx.get(f"{servers[0].url}/metrics").text
            assert 'vagt_limit_store_errors_total{outcome="admitted"} 1.0' in metrics
        finally:
            redis_server.start()
    finally:
        for server in servers:
            server.stop()
