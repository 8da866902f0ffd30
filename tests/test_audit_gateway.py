"""The audit log of a live gateway: one record per request (allowed, denied, rate-limited,
failed) and per admin action, with the right fields and no raw text; reviewed through the API
and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, ROOT, VAGT, Server, write_catalogue
from tests.servers.postgres import Postgres

POLICY = """version: 1
roles:
  admin: {members: {api_key_roles: [admin]}}
  user: {members: {api_key_roles: [user]}}
  limited: {members: {api_key_roles: [limited]}}
  viewer: {members: {api_key_roles: [viewer]}}
rules:
  - roles: [admin]
    allow: [chat, complete, embed, models:list, policy:read, policy:write, audit:read]
  - roles: [user, limited]
    allow: [chat, complete, embed, models:list]
  - roles: [viewer]
    allow: [models:list]
limits:
  roles:
    limited: {requests: 1/minute}
"""
SECRET_PROMPT = "My card is 4111 1111 1111 1111 and my mail is alice@example.com"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            model_path: Path) -> Iterator[Server]:
    """A gateway whose database is SQLite (the default), or a PostgreSQL of its own."""
    root = tmp_path_factory.mktemp("audit")
    write_catalogue(root / "data", model_path)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    env = {}
    if request.param == "postgresql":
        postgres: Postgres = request.getfixturevalue("postgres")
        env["VAGT_DATABASE_URL"] = postgres.create_database()
    server = Server(root / "data", "--workers", "1", "--threads", "1", policy=policy, env=env)
    server.policy = policy  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chain(gateway: Server) -> str:
    """The gateway's chain (by default HOST-KEYID), as its banner names it; the CLI beside it,
    on the same data directory and key, writes on the same chain."""
    match = re.search(r"audit log: chain (\S+),", "".join(gateway.banner))
    assert match is not None
    return match.group(1)


@pytest.fixture(scope="module")
def keys(gateway: Server) -> dict[str, str]:
    return {role: gateway.create_key(role, role) for role in ("user", "limited", "viewer")}


def chat(client: httpx.Client, content: str = "Say hi", **extra: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4,
        **extra})


def rule_line(gateway: Server, text: str) -> str:
    policy: Path = gateway.policy  # type: ignore[attr-defined]
    line = policy.read_text().splitlines().index(text) + 1
    return f"{policy}:{line}"


def test_an_allowed_request_is_recorded_with_its_facts_and_no_text(
        gateway: Server, keys: dict[str, str], chain: str) -> None:
    response = chat(gateway.as_key(keys["user"]), SECRET_PROMPT)
    assert response.status_code == 200
    record = gateway.audit_record(response.headers["x-request-id"])
    usage = response.json()["usage"]
    assert record["kind"] == "request"
    assert (record["subject"], record["auth_method"], record["roles"]) == (
        "key:user", "api_key", ["user"])
    assert record["client"] == "127.0.0.1"
    assert (record["api"], record["action"], record["route"]) == (
        "openai", "chat", "POST /v1/chat/completions")
    assert (record["model"], record["pool"], record["hardware"]) == (
        MODEL, f"{MODEL}/gguf", "cpu")
    assert (record["decision"], record["status"], record["error"]) == ("allowed", 200, None)
    assert record["rule"] == f"rule 2 ({rule_line(gateway, '  - roles: [user, limited]')})"
    assert record["policy_version"] == response.headers["x-vagt-policy-version"]
    assert record["prompt_tokens"] == usage["prompt_tokens"]
    assert record["completion_tokens"] == usage["completion_tokens"]
    assert 0 < record["ttft_us"] <= record["latency_us"]
    assert record["pii"] == {}
    assert record["chain"] == chain
    assert record["seq"] > 0
    stored = json.dumps(record)
    answer = response.json()["choices"][0]["message"]["content"] or "\0"
    for secret in ("4111 1111 1111 1111", "alice@example.com", "My card", answer):
        assert secret not in stored


def test_a_stream_is_recorded_with_its_tokens(gateway: Server, keys: dict[str, str]) -> None:
    with gateway.as_key(keys["user"]) as client, client.stream(
            "POST", "/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "Count to five"}],
                "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        request_id = response.headers["x-request-id"]
    usage = json.loads(lines[-1][6:])["usage"]
    record = gateway.audit_record(request_id)
    assert (record["decision"], record["status"]) == ("allowed", 200)
    assert record["completion_tokens"] == usage["completion_tokens"] > 0
    assert record["ttft_us"] < record["latency_us"]


def test_an_unauthenticated_request_is_recorded_as_denied(gateway: Server) -> None:
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": MODEL},
                          headers={"Authorization": "Bearer vagt_not-a-real-key"})
    assert response.status_code == 401
    assert "x-vagt-policy-version" not in response.headers
    record = gateway.audit_record(response.headers["x-request-id"])
    assert (record["decision"], record["status"], record["error"]) == (
        "denied", 401, "invalid_api_key")
    assert (record["subject"], record["roles"], record["model"]) == (None, [], None)
    assert "vagt_not-a-real-key" not in json.dumps(record)


def test_a_forbidden_request_names_the_rule_that_denied_it(
        gateway: Server, keys: dict[str, str]) -> None:
    response = chat(gateway.as_key(keys["viewer"]))
    assert response.status_code == 403
    record = gateway.audit_record(response.headers["x-request-id"])
    assert (record["decision"], record["status"], record["error"]) == (
        "denied", 403, "permission_denied")
    assert (record["subject"], record["action"], record["model"]) == ("key:viewer", "chat", MODEL)
    assert record["rule"] == "deny by default"


def test_a_rate_limited_request_names_the_limit(gateway: Server, keys: dict[str, str]) -> None:
    client = gateway.as_key(keys["limited"])
    assert chat(client).status_code == 200
    response = chat(client)
    assert response.status_code == 429
    record = gateway.audit_record(response.headers["x-request-id"])
    assert (record["decision"], record["status"], record["error"]) == (
        "rate_limited", 429, "rate_limit_exceeded")
    assert record["limit"] == "requests (1/minute, roles)"


def test_failed_requests_are_recorded_with_their_error(
        gateway: Server, keys: dict[str, str]) -> None:
    client = gateway.as_key(keys["user"])
    missing = client.post("/v1/chat/completions", json={
        "model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    broken = client.post("/v1/chat/completions", content=b"{not json")
    too_long = client.post("/api/generate", json={"model": MODEL, "prompt": "x",
                                                  "options": {"num_ctx": 10**6}})
    for response, status, code in ((missing, 404, "model_not_found"),
                                   (broken, 400, "invalid_request"),
                                   (too_long, 400, "invalid_request")):
        assert response.status_code == status
        record = gateway.audit_record(response.headers["x-request-id"])
        assert (record["decision"], record["status"], record["error"]) == (
            "failed", status, code)
    assert gateway.audit_record(too_long.headers["x-request-id"])["api"] == "ollama"


def test_admin_actions_are_recorded(gateway: Server, keys: dict[str, str]) -> None:
    policy: Path = gateway.policy  # type: ignore[attr-defined]
    with gateway.client as client:
        before = client.get("/admin/policy").json()["version"]
        changed = client.put("/admin/policy", content=POLICY + "# edited over HTTP\n")
        assert changed.status_code == 200
        record = gateway.audit_record(changed.headers["x-request-id"])
        assert (record["kind"], record["action"], record["subject"]) == (
            "admin", "policy:write", "key:admin")
        assert record["target"] == changed.json()["version"]
        assert record["detail"] == {"previous": before}
        refused = client.put("/admin/policy", content="version: 2\n")
        assert refused.status_code == 422
        record = gateway.audit_record(refused.headers["x-request-id"])
        assert (record["kind"], record["decision"], record["status"]) == ("admin", "failed", 422)
    # the CLI, on the gateway's host
    gateway.create_key("audited", "user")
    assert gateway.vagt("keys", "revoke", "audited").returncode == 0
    # an edit of the policy file, picked up by the watcher
    policy.write_text(POLICY + "# edited in the file\n")
    time.sleep(1.5)
    found = search(gateway, kind="admin", limit=20)
    actions = [(r["action"], r["target"], r["api"]) for r in found]
    assert ("keys:create", "audited", "cli") in actions
    assert ("keys:revoke", "audited", "cli") in actions
    reload = next(r for r in found if r["action"] == "policy:reload")
    assert (reload["subject"], reload["status"]) == ("policy file", 200)
    assert reload["detail"]["previous"] == changed.json()["version"]
    cli_record = next(r for r in found if r["action"] == "keys:create")
    assert cli_record["auth_method"] == "local"


def search(gateway: Server, **filters: Any) -> list[dict[str, Any]]:
    with gateway.client as client:
        client.get("/admin/audit/verify")  # flushes what is spooled
        response = client.get("/admin/audit", params=filters)
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["records"]
        return records


def test_the_api_filters_and_pages(gateway: Server, keys: dict[str, str]) -> None:
    for _ in range(3):
        chat(gateway.as_key(keys["viewer"]))  # denied
    denied = search(gateway, decision="denied", subject="key:viewer")
    assert len(denied) >= 3
    assert all(r["decision"] == "denied" and r["subject"] == "key:viewer" for r in denied)
    times = [r["time"] for r in denied]
    assert times == sorted(times, reverse=True)
    with gateway.client as client:
        first = client.get("/admin/audit", params={"subject": "key:viewer", "limit": 2}).json()
        second = client.get("/admin/audit", params={"subject": "key:viewer", "limit": 2,
                                                    "cursor": first["next_cursor"]}).json()
        assert len(first["records"]) == 2
        assert first["next_cursor"]
        assert not {r["id"] for r in first["records"]} & {r["id"] for r in second["records"]}
        assert second["records"][0]["time"] <= first["records"][-1]["time"]
        since = client.get("/admin/audit", params={"since": "1h", "until": "2000-01-01"})
        assert since.json()["records"] == []
        bad = client.get("/admin/audit", params={"decision": "maybe"})
        assert bad.status_code == 400
        assert "decision must be one of" in bad.json()["error"]["message"]
        bad_time = client.get("/admin/audit", params={"since": "last tuesday"})
        assert bad_time.status_code == 400
        assert "since" in bad_time.json()["error"]["message"]


def test_reading_the_audit_log_needs_audit_read(gateway: Server, keys: dict[str, str]) -> None:
    response = gateway.as_key(keys["user"]).get("/admin/audit")
    assert response.status_code == 403
    record = gateway.audit_record(response.headers["x-request-id"])
    assert (record["action"], record["decision"]) == ("audit:read", "denied")


def test_export_and_verify_over_http(gateway: Server, chain: str) -> None:
    with gateway.client as client:
        verified = client.get("/admin/audit/verify").json()
        assert verified["ok"] is True
        [report] = verified["chains"]
        assert report["chain"] == chain  # the CLI's admin records are on the gateway's chain
        assert report["records"] > 10
        lines = client.get("/admin/audit/export", params={"decision": "denied"}).text
        exported = [json.loads(line) for line in lines.splitlines()]
        assert exported
        assert all(r["decision"] == "denied" for r in exported)
        assert all({"chain", "seq", "prev"} <= r.keys() for r in exported)
        table = client.get("/admin/audit/export", params={"format": "csv", "kind": "admin"})
        assert table.headers["content-type"].startswith("text/csv")
        header, *rows = table.text.splitlines()
        assert header.startswith("id,time,kind,subject,auth_method,roles")
        assert rows
        assert all(",admin," in row for row in rows)
        assert client.get("/admin/audit/export", params={"format": "xml"}).status_code == 400


def test_the_cli_searches_shows_exports_tails_and_verifies(gateway: Server, chain: str) -> None:
    search(gateway)  # flush
    found = gateway.vagt("audit", "search", "--decision", "denied", "--subject", "key:viewer",
                     "--limit", "2")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].startswith("TIME (UTC)")
    assert len(lines) == 3
    assert all("key:viewer" in line and "denied" in line for line in lines[1:])
    record_id = lines[1].split()[-1]
    shown = gateway.vagt("audit", "show", record_id)
    assert json.loads(shown.stdout)["id"] == record_id
    assert gateway.vagt("audit", "show", "nope").returncode == 1
    exported = gateway.vagt("audit", "export", "--format", "csv", "--kind", "admin")
    assert exported.stdout.splitlines()[0].startswith("id,time,kind")
    assert "exported" in exported.stderr
    tail = gateway.vagt("audit", "tail", "-n", "3", "--json")
    assert len(tail.stdout.splitlines()) == 3
    verified = gateway.vagt("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK  {chain}:")
    bad = gateway.vagt("audit", "search", "--since", "someday")
    assert bad.returncode == 1
    assert "since" in bad.stderr


def test_tail_follows_new_records(gateway: Server, keys: dict[str, str]) -> None:
    follower = subprocess.Popen(
        [*VAGT, "audit", "tail", "-f", "-n", "0", "--json", "--interval", "0.1",
         "--data-dir", str(gateway.data_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **gateway.env})
    try:
        time.sleep(2.0)  # started, positions taken
        response = chat(gateway.as_key(keys["viewer"]))
        assert follower.stdout is not None
        seen = json.loads(follower.stdout.readline())
        while seen["id"] != response.headers["x-request-id"]:
            seen = json.loads(follower.stdout.readline())
        assert seen["decision"] == "denied"
    finally:
        follower.terminate()
        follower.wait(timeout=10)
