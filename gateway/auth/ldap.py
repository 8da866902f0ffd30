"""Active Directory / LDAP: HTTP Basic credentials checked by search-then-bind (ldap3).

1. Refuse an empty or blank password before touching the directory (an LDAP bind with an empty
   password is an *anonymous* bind and succeeds: it is not a login).
2. With the service account, search the user's entry with the configured filter; the username is
   escaped per RFC 4515, so ``*``, ``(``, ``)``, ``\\`` and NUL match only themselves.
3. Bind as that entry's DN with the password.
4. Groups: ``memberOf``, plus nested groups — AD's LDAP_MATCHING_RULE_IN_CHAIN
   (1.2.840.113556.1.4.1941) where the server is AD, otherwise a breadth-first walk of
   ``(member=<dn>)`` searches up to ``max_depth`` levels.

LDAPS and StartTLS verify the server certificate. Service connections are pooled; successful
logins are cached for ``cache_ttl`` seconds keyed by an HMAC of username and password under a
per-process random key — the password itself is never kept. ldap3 is synchronous, so each login
runs in a worker thread and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import queue
import secrets
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SAFE_SYNC, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from gateway.auth.principal import Identity
from gateway.policy import LDAPDirectory

log = logging.getLogger("vagt.auth.ldap")

IN_CHAIN = "1.2.840.113556.1.4.1941"
AD_CAPABILITY = "1.2.840.113556.1.4.800"  # LDAP_CAP_ACTIVE_DIRECTORY_OID


class LoginFailed(Exception):
    """Why a login was refused (for the log only)."""


class DirectoryUnavailable(Exception):
    """The directory could not be reached or refused the service account."""


class LDAPAuthenticator:
    def __init__(self, config: LDAPDirectory) -> None:
        self.config = config
        url = urlsplit(config.url)
        self._host = url.hostname or ""
        self._ssl = url.scheme == "ldaps"
        self._port = url.port or (636 if self._ssl else 389)
        self._password = os.environ.get(config.bind_password_env, "")
        self._pool: queue.LifoQueue[Connection] = queue.LifoQueue(config.pool_size)
        self._cache: dict[bytes, tuple[float, Identity]] = {}
        self._cache_key = secrets.token_bytes(32)
        self._nested: str | None = None  # resolved nesting strategy

    # --- public --------------------------------------------------------------------------------

    async def identify(self, username: str, password: str) -> Identity:
        if not username or not password or not password.strip():
            raise LoginFailed("empty username or password")
        key = hmac.new(self._cache_key, f"{username}\0{password}".encode(), hashlib.sha256)
        fingerprint = key.digest()
        cached = self._cache.get(fingerprint)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        identity = await asyncio.to_thread(self._login, username, password)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[fingerprint] = (time.monotonic() + self.config.cache_ttl, identity)
        return identity

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().unbind()

    # --- connections ---------------------------------------------------------------------------

    def _connect(self, user: str, password: str) -> Connection:
        """A new connection bound as ``user`` (a new Server each time: ldap3 remembers a failed
        Server as unusable)."""
        tls = Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                  ca_certs_file=str(self.config.ca_file) if self.config.ca_file else None)
        server = Server(self._host, port=self._port, use_ssl=self._ssl, tls=tls,
                        get_info=NONE, connect_timeout=self.config.timeout)
        connection = Connection(server, user=user, password=password,
                                client_strategy=SAFE_SYNC, auto_bind=False,
                                receive_timeout=math.ceil(self.config.timeout),
                                raise_exceptions=False)
        connection.open()
        if self.config.start_tls and not self._ssl and not connection.start_tls():
            connection.unbind()  # never fall back to sending credentials in clear text
            raise LDAPStartTLSError("StartTLS failed")
        return connection

    @contextmanager
    def _service(self) -> Iterator[Connection]:
        """A pooled connection bound as the service account."""
        try:
            connection = self._pool.get_nowait()
        except queue.Empty:
            try:
                connection = self._connect(self.config.bind_dn, self._password)
                status, result, _, _ = connection.bind()
            except LDAPException as exc:
                raise DirectoryUnavailable(f"cannot reach {self.config.url}: {exc}") from None
            if not status:
                description = result.get("description")
                raise DirectoryUnavailable(
                    f"service bind as {self.config.bind_dn} failed: {description}") from None
        try:
            yield connection
        except LDAPException:
            connection.unbind()  # broken: do not return it to the pool
            raise
        else:
            try:
                self._pool.put_nowait(connection)
            except queue.Full:
                connection.unbind()

    # --- login ---------------------------------------------------------------------------------

    def _login(self, username: str, password: str) -> Identity:
        config = self.config
        user_filter = config.user_filter.format(username=escape_filter_chars(username))
        attributes = ["memberOf", "displayName", "cn", config.subject_attribute]
        try:
            with self._service() as service:
                _, _, entries, _ = service.search(config.user_base, user_filter, SUBTREE,
                                                  attributes=attributes, size_limit=2)
                entries = [e for e in entries if e.get("type") == "searchResEntry"]
                if len(entries) != 1:
                    raise LoginFailed(f"{len(entries)} entries match the username")
                entry = entries[0]
                self._bind_as(entry["dn"], password)
                groups = self._groups(service, entry["dn"], _values(entry, "memberOf"))
        except LDAPException as exc:
            raise DirectoryUnavailable(str(exc)) from None
        subject = (_values(entry, config.subject_attribute) or [username])[0]
        name = (_values(entry, "displayName") or _values(entry, "cn") or [subject])[0]
        return Identity(subject=subject, method="ldap", display_name=name,
                        groups=frozenset(groups))

    def _bind_as(self, dn: str, password: str) -> None:
        connection = self._connect(dn, password)
        try:
            status, _, _, _ = connection.bind()
        finally:
            connection.unbind()
        if not status:
            raise LoginFailed("wrong password")

    # --- groups --------------------------------------------------------------------------------

    def _groups(self, service: Connection, user_dn: str, direct: list[str]) -> set[str]:
        strategy = self._nesting(service)
        base = self.config.group_base or self.config.user_base
        if strategy == "matching_rule":
            _, _, entries, _ = service.search(
                base, f"(member:{IN_CHAIN}:={escape_filter_chars(user_dn)})", SUBTREE,
                attributes=[])
            return set(direct) | {e["dn"] for e in entries if e.get("type") == "searchResEntry"}
        groups = set(direct)
        if strategy == "off":
            return groups
        frontier = set(direct)
        for _ in range(self.config.max_depth):
            if not frontier:
                break
            members = "".join(f"(member={escape_filter_chars(dn)})" for dn in sorted(frontier))
            _, _, entries, _ = service.search(base, f"(|{members})", SUBTREE, attributes=[])
            parents = {e["dn"] for e in entries if e.get("type") == "searchResEntry"}
            frontier = parents - groups
            groups |= parents
        return groups

    def _nesting(self, service: Connection) -> str:
        if self._nested is None:
            self._nested = self.config.nested_groups
            if self._nested == "auto":
                _, _, entries, _ = service.search("", "(objectClass=*)", BASE,
                                                  attributes=["supportedCapabilities"])
                capabilities = _values(entries[0], "supportedCapabilities") if entries else []
                self._nested = "matching_rule" if AD_CAPABILITY in capabilities else "walk"
                log.info("LDAP nested groups: %s", self._nested)
        return self._nested


def _values(entry: dict[str, Any], attribute: str) -> list[str]:
    value = entry.get("attributes", {}).get(attribute)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
