"""Active Directory / LDAP logins against a real OpenLDAP slapd."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.ldap import DirectoryUnavailable, LDAPAuthenticator, LoginFailed
from gateway.auth.principal import Identity
from gateway.policy import LDAPDirectory
from tests.servers.idp import free_port
from tests.servers.ldap import SERVICE_DN, SERVICE_PW, SUFFIX, USERS, Directory, group_dn


def settings(directory: Directory, **overrides: Any) -> LDAPDirectory:
    return LDAPDirectory.model_validate({
        "url": directory.url, "bind_dn": SERVICE_DN, "bind_password_env": "TEST_LDAP_PW",
        "user_base": f"ou=people,{SUFFIX}", "group_base": f"ou=groups,{SUFFIX}",
        "user_filter": "(uid={username})", "subject_attribute": "uid", **overrides})


@pytest.fixture(autouse=True)
def _service_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LDAP_PW", SERVICE_PW)


def login(config: LDAPDirectory, username: str, password: str) -> Identity:
    authenticator = LDAPAuthenticator(config)
    try:
        return asyncio.run(authenticator.identify(username, password))
    finally:
        authenticator.close()


def test_login_with_direct_groups(directory: Directory) -> None:
    alice = login(settings(directory), "alice", USERS["alice"])
    assert alice.subject == "alice"
    assert alice.method == "ldap"
    assert alice.display_name == "Alice Example"
    assert alice.groups == {group_dn("analysts")}


@pytest.mark.parametrize(("nesting", "depth", "expected"), [
    ("auto", 8, {"engineers", "staff", "everyone"}),  # OpenLDAP is not AD: the walk
    ("walk", 1, {"engineers", "staff"}),
    ("off", 8, {"engineers"}),
])
def test_nested_groups(directory: Directory, nesting: str, depth: int,
                       expected: set[str]) -> None:
    bob = login(settings(directory, nested_groups=nesting, max_depth=depth), "bob",
                USERS["bob"])
    assert bob.groups == {group_dn(g) for g in expected}


def test_user_without_groups(directory: Directory) -> None:
    assert login(settings(directory), "carol", USERS["carol"]).groups == frozenset()


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong"),
    ("nobody", "alice-pass"),
    ("alice", ""),
    ("alice", "   "),
    ("", "alice-pass"),
])
def test_bad_credentials_are_refused(directory: Directory, username: str, password: str) -> None:
    with pytest.raises(LoginFailed):
        login(settings(directory), username, password)


@pytest.mark.parametrize("username", [
    "*", "al*", "*e", "alice)(uid=*", "alice)(|(uid=*", "(uid=alice)", "alice\\", "\\2a",
    "alice\x00", "alice\x00)(uid=*",
])
def test_filter_metacharacters_match_only_themselves(directory: Directory, username: str) -> None:
    with pytest.raises(LoginFailed):
        login(settings(directory), username, USERS["alice"])


def test_empty_password_never_reaches_the_directory() -> None:
    dead = LDAPDirectory(url=f"ldap://127.0.0.1:{free_port()}", bind_dn=SERVICE_DN,
                         user_base=SUFFIX)
    with pytest.raises(LoginFailed):  # refused before any connection (else: unavailable)
        login(dead, "alice", "")
    with pytest.raises(DirectoryUnavailable):
        login(dead, "alice", "alice-pass")


def test_ldaps_and_starttls_verify_the_certificate(directory: Directory) -> None:
    ldaps = settings(directory, url=directory.tls_url, ca_file=directory.ca_file)
    assert login(ldaps, "alice", USERS["alice"]).subject == "alice"
    starttls = settings(directory, start_tls=True, ca_file=directory.ca_file)
    assert login(starttls, "alice", USERS["alice"]).subject == "alice"
    for untrusted in (settings(directory, url=directory.tls_url),
                      settings(directory, start_tls=True)):  # the test CA is not trusted
        with pytest.raises(DirectoryUnavailable):
            login(untrusted, "alice", USERS["alice"])


def test_logins_are_cached_by_a_salted_hash_never_the_password(tmp_path: Path) -> None:
    private = Directory(tmp_path)
    authenticator = LDAPAuthenticator(settings(private, cache_ttl=60))

    async def run() -> None:
        first = await authenticator.identify("alice", USERS["alice"])
        private.stop()
        started = time.perf_counter()
        again = await authenticator.identify("alice", USERS["alice"])
        assert time.perf_counter() - started < 0.01
        assert again == first
        with pytest.raises(DirectoryUnavailable):  # a different password is not cached
            await authenticator.identify("alice", "guess")

    try:
        asyncio.run(run())
    finally:
        authenticator.close()
    for key in authenticator._cache:
        assert USERS["alice"].encode() not in key
        assert len(key) == 32


def test_service_connections_are_pooled(directory: Directory) -> None:
    authenticator = LDAPAuthenticator(settings(directory, cache_ttl=0))

    async def run() -> None:
        for uid in ("alice", "bob", "carol", "alice"):
            await authenticator.identify(uid, USERS[uid])

    try:
        asyncio.run(run())
        assert authenticator._pool.qsize() == 1  # one service connection, reused
    finally:
        authenticator.close()
