"""The authenticate stage: request headers → Principal, or 401.

Credentials are recognised by their form: ``x-api-key`` or ``Authorization: Bearer vagt_…`` is an
API key, any other bearer token is an OIDC JWT, ``Authorization: Basic`` goes to the directory.
Every failure is the same 401 with ``WWW-Authenticate``; the reason goes to the log, never a
secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping

import httpx

from gateway.auth.apikeys import APIKeyAuthenticator, looks_like_key
from gateway.auth.keystore import KeyStore
from gateway.auth.ldap import DirectoryUnavailable, LDAPAuthenticator, LoginFailed
from gateway.auth.oidc import InvalidToken, OIDCVerifier
from gateway.auth.principal import Identity, Principal
from gateway.errors import Unauthorized, Unavailable
from gateway.policy import LDAPDirectory, OIDCIssuer, Policy, RoleMapping

log = logging.getLogger("vagt.auth")


class Authenticator:
    def __init__(self, policy: Policy, keys: APIKeyAuthenticator | None,
                 oidc: OIDCVerifier | None, ldap: LDAPAuthenticator | None) -> None:
        self.roles = RoleMapping(policy)
        self.keys = keys
        self.oidc = oidc
        self.ldap = ldap
        self.challenge = 'Bearer realm="vagt"' + (
            ', Basic realm="vagt", charset="UTF-8"' if ldap is not None else "")

    async def authenticate(self, headers: Mapping[str, str], *, secure: bool) -> Principal:
        identity = await self._identify(headers, secure)
        if identity is None:
            raise Unauthorized(self.challenge)
        return Principal(
            subject=identity.subject, method=identity.method,
            display_name=identity.display_name, groups=identity.groups,
            roles=self.roles.roles_of(subject=identity.subject, groups=identity.groups,
                                      idp_roles=identity.idp_roles,
                                      api_key_role=identity.api_key_role))

    async def _identify(self, headers: Mapping[str, str], secure: bool) -> Identity | None:
        api_key = headers.get("x-api-key")
        if api_key is not None:
            return await self._api_key(api_key)
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and looks_like_key(credentials):
            return await self._api_key(credentials)
        if scheme == "bearer" and credentials:
            return await self._bearer(credentials)
        if scheme == "basic" and credentials:
            return await self._basic(credentials, secure)
        log.info("authentication failed: no credentials")
        return None

    async def _api_key(self, secret: str) -> Identity | None:
        identity = None if self.keys is None else await self.keys.identify(secret)
        if identity is None:
            log.info("authentication failed: unknown, revoked or expired API key")
        return identity

    async def _bearer(self, token: str) -> Identity | None:
        if self.oidc is None:
            log.info("authentication failed: a bearer token, but no OIDC issuer is configured")
            return None
        try:
            return await self.oidc.identify(token)
        except InvalidToken as reason:
            log.info("authentication failed: bearer token refused: %s", reason)
            return None

    async def _basic(self, credentials: str, secure: bool) -> Identity | None:
        if self.ldap is None:
            log.info("authentication failed: Basic credentials, but no directory is configured")
            return None
        if not secure and not self.ldap.config.allow_plain_http:
            log.warning("authentication failed: Basic credentials over plain HTTP are refused")
            return None
        try:
            username, colon, password = base64.b64decode(
                credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            log.info("authentication failed: malformed Basic credentials")
            return None
        if not colon:
            return None
        try:
            return await self.ldap.identify(username, password)
        except LoginFailed as reason:
            log.info("authentication failed: directory login refused: %s", reason)
            return None
        except DirectoryUnavailable as reason:
            log.error("directory unavailable: %s", reason)
            raise Unavailable("the identity directory is unavailable; retry shortly",
                              retry_after=5) from None



class AuthenticatorFactory:
    """Builds the Authenticator for each policy version, reusing the OIDC and LDAP components
    (with their key caches, login caches and connection pools) while their configuration is
    unchanged."""

    def __init__(self, keys: KeyStore, http: httpx.AsyncClient) -> None:
        self._keys = keys
        self._http = http
        self._api_keys: dict[float, APIKeyAuthenticator] = {}
        self._oidc: dict[tuple[OIDCIssuer, ...], OIDCVerifier] = {}
        self._ldap: dict[LDAPDirectory, LDAPAuthenticator] = {}

    def __call__(self, policy: Policy) -> Authenticator:
        identity = policy.identity
        keys = None
        if identity.api_keys.enabled:
            ttl = identity.api_keys.cache_ttl
            keys = self._api_keys.get(ttl) or self._api_keys.setdefault(
                ttl, APIKeyAuthenticator(self._keys, ttl))
        oidc = None
        if identity.oidc:
            oidc = self._oidc.get(identity.oidc) or self._oidc.setdefault(
                identity.oidc, OIDCVerifier(identity.oidc, self._http))
        ldap = None
        if identity.ldap is not None:
            ldap = self._ldap.get(identity.ldap) or self._ldap.setdefault(
                identity.ldap, LDAPAuthenticator(identity.ldap))
        return Authenticator(policy, keys, oidc, ldap)

    async def close(self) -> None:
        for keys in self._api_keys.values():
            await keys.close()
        for ldap in self._ldap.values():
            ldap.close()
