"""Authentication end to end: a live gateway in front of a real IdP, a real slapd and API keys."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
import yaml

from gateway.auth.authenticator import Authenticator
from gateway.auth.ldap import LDAPAuthenticator
from gateway.errors import Unauthorized
from gateway.policy import Policy
from tests.conftest import MODEL, Server, run_vagt, write_catalogue
from tests.servers.idp import IdentityProvider
from tests.servers.ldap import SERVICE_DN, SERVICE_PW, SUFFIX, USERS, Directory, group_dn


def policy_document(idp: IdentityProvider, directory: Directory) -> dict[str, Any]:
    return {
        "version": 1,
        "identity": {
            "api_keys": {"cache_ttl": 0.5},
            "oidc": [{"issuer": idp.issuer, "audience": "vagt",
                      "roles_claim": "realm_access.roles", "groups_claim": "groups"}],
            "ldap": {"url": directory.url, "bind_dn": SERVICE_DN,
                     "bind_password_env": "TEST_LDAP_PW", "user_base": f"ou=people,{SUFFIX}",
                     "group_base": f"ou=groups,{SUFFIX}", "user_filter": "(uid={username})",
                     "subject_attribute": "uid", "allow_plain_http": True},
        },
        "roles": {
            "admin": {"members": {"api_key_roles": ["admin"], "idp_roles": ["vagt-admin"]}},
            "user": {"members": {"api_key_roles": ["user"], "idp_roles": ["vagt-user"],
                                 "groups": [group_dn("STAFF").upper()], "subjects": ["carol"]}},
        },
        "rules": [
            {"roles": ["admin"], "allow": ["chat", "complete", "embed", "models:list",
                                           "policy:read", "policy:write"]},
            {"roles": ["user"], "allow": ["chat", "complete", "embed", "models:list"]},
        ],
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, model_path: Path, idp: IdentityProvider,
            directory: Directory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("auth")
    write_catalogue(root / "data", model_path)
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_document(idp, directory)))
    server = Server(root / "data", "--threads", "1", policy=policy,
                    env={"TEST_LDAP_PW": SERVICE_PW})
    yield server
    server.stop()


def anonymous(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60)


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def lowercase(headers: dict[str, str]) -> dict[str, str]:
    """Header names as ASGI delivers them."""
    return {name.lower(): value for name, value in headers.items()}


def test_everything_but_health_needs_credentials(gateway: Server) -> None:
    with anonymous(gateway) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
                             ("GET", "/api/tags"), ("GET", "/api/ps"), ("POST", "/api/chat"),
                             ("POST", "/api/generate"), ("POST", "/api/embed"),
                             ("POST", "/api/embeddings"), ("POST", "/api/show"),
                             ("GET", "/api/version")]:
            response = http.request(method, path, json={"model": MODEL})
            assert response.status_code == 401, path
            assert "x-vagt-policy-version" not in response.headers
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="vagt"')
            assert 'Basic realm="vagt"' in challenge


def test_oidc_token_through_the_openai_client(gateway: Server, idp: IdentityProvider) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=idp.token("reporting"),
                           max_retries=0)
    reply = client.chat.completions.create(model=MODEL, max_tokens=3,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content is not None
    es = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=idp.token("signed-es"),
                       max_retries=0)
    assert [m.id for m in es.models.list().data] == [MODEL]


def test_ldap_basic_through_the_ollama_client(gateway: Server) -> None:
    client = ollama.Client(host=gateway.url, headers=basic("bob", USERS["bob"]))
    assert [m.model for m in client.list().models] == [MODEL]
    wrong = ollama.Client(host=gateway.url, headers=basic("bob", "nope"))
    with pytest.raises(ollama.ResponseError) as caught:
        wrong.list()
    assert caught.value.status_code == 401


def test_api_keys_by_bearer_and_x_api_key(gateway: Server) -> None:
    secret = gateway.create_key("svc-a", "user")
    with anonymous(gateway) as http:
        assert http.get("/api/tags", headers={"x-api-key": secret}).status_code == 200
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}
                        ).status_code == 200


def test_revoked_and_expired_keys_are_refused(gateway: Server) -> None:
    data_dir = str(gateway.data_dir)
    secret = gateway.create_key("svc-revoke", "user")
    short = gateway.create_key("svc-short", "user", "--expires", "2s")
    with anonymous(gateway) as http:
        assert http.get("/api/tags", headers={"x-api-key": secret}).status_code == 200
        assert http.get("/api/tags", headers={"x-api-key": short}).status_code == 200
        assert run_vagt("keys", "revoke", "svc-revoke", "--data-dir", data_dir).returncode == 0
        time.sleep(2.1)  # past the key cache (0.5 s) and the short key's lifetime
        assert http.get("/api/tags", headers={"x-api-key": secret}).status_code == 401
        assert http.get("/api/tags", headers={"x-api-key": short}).status_code == 401
    listing = run_vagt("keys", "list", "--data-dir", data_dir).stdout
    assert "svc-revoke" in listing
    assert "revoked" in listing
    assert "expired" in listing
    assert secret not in listing


def test_failures_look_alike_and_leak_nothing(gateway: Server, idp: IdentityProvider) -> None:
    token = idp.token("reporting")
    attempts = {
        "tampered token": {"Authorization": f"Bearer {token[:-4]}AAAA"},
        "unknown key": {"x-api-key": "vagt_" + "A" * 43},
        "wrong password": basic("alice", "not-alices"),
        "unknown user": basic("mallory", "whatever-pass"),
        "empty password": basic("alice", ""),
        "garbage scheme": {"Authorization": "Digest abc"},
    }
    bodies = set()
    with anonymous(gateway) as http:
        for name, headers in attempts.items():
            response = http.post("/v1/chat/completions", headers=headers, json={})
            assert response.status_code == 401, name
            bodies.add(response.text)
            ollama_body = http.get("/api/tags", headers=headers)
            assert ollama_body.status_code == 401
            assert set(ollama_body.json()) == {"error"}
    assert len(bodies) == 1  # no hint which check failed or whether the user exists
    assert gateway.logged("authentication failed")  # the reasons reach the log…
    log = "".join(gateway.log)  # …and no secret does
    for secret in (token, token[:-4], "not-alices", "whatever-pass", USERS["alice"], "A" * 43,
                   gateway.key):
        assert secret not in log


def test_policy_maps_identities_onto_roles(idp: IdentityProvider, directory: Directory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LDAP_PW", SERVICE_PW)
    policy = Policy.model_validate(policy_document(idp, directory))
    assert policy.identity.ldap is not None
    ldap = LDAPAuthenticator(policy.identity.ldap)
    authenticator = Authenticator(policy, None, None, ldap)

    async def roles(username: str, secure: bool = True) -> frozenset[str]:
        principal = await authenticator.authenticate(lowercase(basic(username, USERS[username])),
                                                     secure=secure)
        return principal.roles

    try:
        assert asyncio.run(roles("bob")) == {"user"}  # staff, nested, matched case-insensitively
        assert asyncio.run(roles("carol")) == {"user"}  # by subject
        assert asyncio.run(roles("alice")) == frozenset()  # analysts hold no Vagt role
    finally:
        ldap.close()
    strict = policy.model_copy(update={"identity": policy.identity.model_copy(update={
        "ldap": policy.identity.ldap.model_copy(update={"allow_plain_http": False})})})
    assert strict.identity.ldap is not None
    strict_ldap = LDAPAuthenticator(strict.identity.ldap)
    try:
        with pytest.raises(Unauthorized):  # Basic over plain HTTP, not allowed by this policy
            asyncio.run(Authenticator(strict, None, None, strict_ldap).authenticate(
                lowercase(basic("bob", USERS["bob"])), secure=False))
    finally:
        strict_ldap.close()


def test_only_key_hashes_are_stored(gateway: Server) -> None:
    database = sqlite3.connect(gateway.data_dir / "vagt.db")
    rows = database.execute("SELECT * FROM api_keys").fetchall()
    assert rows
    dump = repr(rows)
    assert gateway.key not in dump
    assert gateway.key[:12] in dump  # the recognisable prefix, for listings
    assert len(gateway.key) >= len("vagt_") + 43  # 32 random bytes, URL-safe
