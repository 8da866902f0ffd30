"""The policy's life in a live gateway: admin API, file watching, versions, rollback, explain,
filtered listings, caps, and reloads under load that lose no request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_POLICY, MODEL, Server, run_vagt, write_catalogue

HEADER = "x-vagt-policy-version"


def policy_text(user_rules: str, user_caps: str = "") -> str:
    """The default policy with other rules (and caps) for the role "user"."""
    return f"""version: 1
roles:
  admin:
    members: {{api_key_roles: [admin]}}
  user:
    members: {{api_key_roles: [user]}}
{user_caps}
rules:
  - roles: [admin]
    allow: [chat, complete, embed, models:list, policy:read, policy:write, audit:read]
{user_rules}
"""


OPEN = policy_text("  - roles: [user]\n    allow: [chat, complete, embed, models:list]\n")
OPEN_TOO = OPEN + "# the same rules, another version\n"
CLOSED = policy_text("  - roles: [user]\n    allow: [models:list]\n    \n"
                     "  - roles: [user]\n    deny: [chat]\n")
ELSEWHERE = policy_text("  - roles: [user]\n    allow: [chat, models:list]\n"
                        "    models: ['other-*']\n")
CAPPED = policy_text("  - roles: [user]\n    allow: [chat, models:list]\n",
                     "    caps: {max_tokens: 5}")


@pytest.fixture
def gateway(tmp_path: Path, model_path: Path) -> Iterator[tuple[Server, str, Path]]:
    """A gateway on its own copy of a policy file, with an admin key and a user key."""
    write_catalogue(tmp_path / "data", model_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(OPEN)
    server = Server(tmp_path / "data", "--workers", "2", "--threads", "1", policy=policy)
    user = server.create_key("app", "user")
    yield server, user, policy
    server.stop()


def chat(http: httpx.Client, **extra: object) -> httpx.Response:
    return http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
        **extra})


def wait_for_version(http: httpx.Client, version: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get("/admin/policy").json()["version"] == version:
            return True
        time.sleep(0.1)
    return False


def test_admin_endpoints_need_policy_permissions(gateway: tuple[Server, str, Path]) -> None:
    server, user, _ = gateway
    with server.as_key(user) as http:
        assert http.get("/admin/policy").status_code == 403
        assert http.put("/admin/policy", content=CLOSED).status_code == 403
        assert http.get("/admin/policy/versions").status_code == 403
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/admin/policy").status_code == 401
    with server.client as admin:
        current = admin.get("/admin/policy").json()
        assert current["text"] == OPEN


def test_put_swaps_atomically_and_refuses_invalid(gateway: tuple[Server, str, Path]) -> None:
    server, user, policy = gateway
    with server.client as admin, server.as_key(user) as app:
        before = chat(app)
        assert before.status_code == 200
        old = before.headers[HEADER]
        refused = admin.put("/admin/policy", content=OPEN.replace("models:list", "models:lst"))
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "invalid_policy"
        assert error["problems"][0]["line"] == 10
        assert "Input should be" in error["problems"][0]["message"]
        assert chat(app).headers[HEADER] == old  # the old policy stays in force
        assert policy.read_text() == OPEN
        swapped = admin.put("/admin/policy", content=CLOSED)
        assert swapped.status_code == 200
        assert swapped.json()["previous"] == old
        denied = chat(app)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "permission_denied"
        assert denied.headers[HEADER] == swapped.json()["version"]
        assert policy.read_text() == CLOSED  # the file on disk matches what is in force


def test_file_changes_are_watched(gateway: tuple[Server, str, Path]) -> None:
    server, user, policy = gateway
    with server.client as admin, server.as_key(user) as app:
        first = admin.get("/admin/policy").json()["version"]
        policy.write_text("version: 1\nrules: [oops\n")  # invalid: logged, not applied
        time.sleep(1.0)
        assert admin.get("/admin/policy").json()["version"] == first
        assert chat(app).status_code == 200
        assert server.logged("policy not reloaded")
        policy.write_text(CLOSED)
        closed = run_vagt("policy", "check", str(policy)).stdout.split("version ")[1][:16]
        assert wait_for_version(admin, closed)
        assert chat(app).status_code == 403


def test_versions_diff_and_rollback(gateway: tuple[Server, str, Path]) -> None:
    server, user, policy = gateway
    data_dir = str(server.data_dir)
    with server.client as admin, server.as_key(user) as app:
        first = admin.get("/admin/policy").json()["version"]
        second = admin.put("/admin/policy", content=CLOSED).json()["version"]
        listed = admin.get("/admin/policy/versions").json()
        assert listed["current"] == second
        assert [(v["version"], v["author"]) for v in listed["versions"]] == [
            (first, "startup"), (second, "key:admin")]
        diff = run_vagt("policy", "diff", first[:8], second[:8], "--data-dir", data_dir)
        assert diff.returncode == 0, diff.stderr
        assert "-    allow: [chat, complete, embed, models:list]" in diff.stdout
        assert "+    deny: [chat]" in diff.stdout
        back = run_vagt("policy", "rollback", first[:8], "--policy", str(policy),
                        "--data-dir", data_dir)
        assert back.returncode == 0, back.stderr
        assert policy.read_text() == OPEN
        assert wait_for_version(admin, first)  # the gateway picked the file up
        assert chat(app).status_code == 200
        authors = [v["author"] for v in admin.get("/admin/policy/versions").json()["versions"]]
        assert authors[-1].startswith("rollback by ")  # recorded once, by the rollback
        versions = run_vagt("policy", "versions", "--data-dir", data_dir).stdout
        assert versions.count("\n") == 3


def test_explain_endpoint(gateway: tuple[Server, str, Path]) -> None:
    server, _, _ = gateway
    with server.client as admin:
        result = admin.post("/admin/policy/explain", json={
            "subject": "key:app", "api_key_role": "user", "action": "chat",
            "model": "smollm2"}).json()
        assert result["allowed"] is True
        assert result["model"] == MODEL  # the alias resolved through the catalogue
        assert result["roles"] == ["user"]
        assert result["location"].endswith(":11")  # the user rule
        denied = admin.post("/admin/policy/explain", json={
            "subject": "key:app", "api_key_role": "user", "action": "policy:write"}).json()
        assert denied["allowed"] is False
        assert denied["location"] is None
        assert admin.post("/admin/policy/explain", json={"subject": "x", "action": "fly"}
                          ).status_code == 400


def test_listings_show_only_permitted_models(gateway: tuple[Server, str, Path]) -> None:
    server, user, _ = gateway
    with server.client as admin, server.as_key(user) as app:
        assert [m["id"] for m in app.get("/v1/models").json()["data"]] == [MODEL]
        admin.put("/admin/policy", content=ELSEWHERE)
        assert app.get("/v1/models").json()["data"] == []
        assert app.get("/api/tags").json()["models"] == []
        assert app.get(f"/v1/models/{MODEL}").status_code == 403
        assert app.post("/api/show", json={"model": MODEL}).status_code == 403
        assert chat(app).status_code == 403
        assert [m["name"] for m in admin.get("/api/tags").json()["models"]] == [MODEL]


def test_caps_are_enforced(gateway: tuple[Server, str, Path]) -> None:
    server, user, _ = gateway
    with server.client as admin, server.as_key(user) as app:
        admin.put("/admin/policy", content=CAPPED)
        refused = chat(app, max_tokens=50)
        assert refused.status_code == 403
        assert refused.json()["error"]["param"] == "max_tokens"
        filled = app.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}]})
        assert filled.status_code == 200
        assert filled.json()["usage"]["completion_tokens"] == 5
        ollama_refused = app.post("/api/generate", json={
            "model": MODEL, "prompt": "hi", "options": {"num_predict": 9}, "stream": False})
        assert ollama_refused.status_code == 403


def test_in_flight_requests_finish_under_their_version(
    gateway: tuple[Server, str, Path],
) -> None:
    server, user, _ = gateway
    with server.client as admin, server.as_key(user) as app:
        lines: list[dict[str, object]] = []
        headers: dict[str, str] = {}

        def stream() -> None:
            with app.stream("POST", "/api/generate", json={
                "model": MODEL, "prompt": "Write a long story about ships.",
                "options": {"num_predict": 120}}) as response:
                headers.update(response.headers)
                lines.extend(json.loads(line) for line in response.iter_lines() if line)

        reader = threading.Thread(target=stream)
        reader.start()
        time.sleep(0.5)
        swapped = admin.put("/admin/policy", content=CLOSED).json()["version"]
        reader.join(timeout=60)
        assert lines[-1]["done"] is True  # finished under the version it started with
        assert headers[HEADER] != swapped
        assert chat(app).status_code == 403  # new requests see the new policy


def test_reloading_under_load_fails_no_request(gateway: tuple[Server, str, Path]) -> None:
    server, user, _ = gateway
    results: list[tuple[float, float, int, str]] = []
    swaps: list[tuple[float, float, str]] = []  # (PUT sent, PUT answered, version)
    stop = threading.Event()

    def load() -> None:
        with server.as_key(user) as app:
            while not stop.is_set():
                started = time.monotonic()
                response = chat(app) if len(results) % 2 else app.get("/v1/models")
                results.append((started, time.monotonic(), response.status_code,
                                response.headers.get(HEADER, "")))

    with server.client as admin:
        swaps.append((0.0, 0.0, admin.get("/admin/policy").json()["version"]))
        clients = [threading.Thread(target=load) for _ in range(3)]
        for client in clients:
            client.start()
        i = 0
        while i < 12 or (len(results) < 30 and i < 400):  # swap until enough requests ran
            i += 1
            sent = time.monotonic()
            reply = admin.put("/admin/policy", content=OPEN_TOO if i % 2 == 0 else OPEN)
            assert reply.status_code == 200
            swaps.append((sent, time.monotonic(), reply.json()["version"]))
            time.sleep(0.15)
        stop.set()
        for client in clients:
            client.join(timeout=60)
    assert len(results) >= 30
    assert len({r[3] for r in results}) == 2  # requests ran under both versions
    assert [r for r in results if r[2] != 200] == []  # zero failed requests
    for started, ended, _, version in results:
        # Version i can be in force from its PUT being sent until the next PUT is answered;
        # each response names a version in force at some moment of its own life.
        possible = {v for i, (sent, _, v) in enumerate(swaps)
                    if sent <= ended and (i + 1 == len(swaps) or swaps[i + 1][1] >= started)}
        assert version in possible


def test_default_policy_is_valid() -> None:
    assert run_vagt("policy", "check", str(DEFAULT_POLICY)).returncode == 0
