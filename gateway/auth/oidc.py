"""OIDC / OAuth2 bearer JWTs, verified against each configured issuer's JWKS.

joserfc does the JOSE work (it is typed, maintained by the Authlib author, and refuses a key
whose type does not match the algorithm). Around it, this module decides which keys and
algorithms are acceptable at all:

- tokens over 16 KiB are refused before any parsing;
- the algorithm must be on the issuer's allow-list (never ``none``, never HMAC);
- keys come only from the issuer's own JWKS, found through its discovery document; ``jku``,
  ``x5u`` and embedded ``jwk`` headers are ignored;
- an unknown ``kid`` refreshes the JWKS at most once per cool-down, so a flood of bad tokens
  cannot hammer the IdP, and a key rotation is picked up without a restart;
- ``iss``, ``aud``, ``exp``, ``nbf``, ``iat`` and the required claims are checked with leeway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from gateway.auth.principal import Identity
from gateway.policy import OIDCIssuer

MAX_TOKEN_BYTES = 16 * 1024
log = logging.getLogger("vagt.auth.oidc")


class InvalidToken(Exception):
    """Why a token was refused (for the log only; the client gets one generic message)."""


def _segment(part: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc


def _claim(claims: dict[str, Any], path: str | None) -> frozenset[str]:
    """A string or list of strings found at a dotted path, e.g. realm_access.roles."""
    if path is None:
        return frozenset()
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return frozenset()
        value = value.get(part)
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class _IssuerKeys:
    """One issuer's signing keys: discovered, cached, refreshed on an unknown kid."""

    def __init__(self, config: OIDCIssuer, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._keys: dict[str, Any] = {}
        self._jwks_uri: str | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and (
                    time.monotonic() - self._fetched_at >= self.config.jwks_cooldown):
                await self._refresh()
        if kid not in self._keys:
            raise InvalidToken("unknown signing key")
        return self._keys[kid]

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            if self._jwks_uri is None:
                discovery = await self._get(
                    f"{self.config.issuer}/.well-known/openid-configuration")
                if discovery.get("issuer", "").rstrip("/") != self.config.issuer:
                    raise InvalidToken("discovery document names another issuer")
                self._jwks_uri = str(discovery["jwks_uri"])
            jwks = await self._get(self._jwks_uri)
            keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (httpx.HTTPError, KeyError, ValueError, JoseError) as exc:
            log.warning("could not fetch the JWKS of %s: %s", self.config.issuer, exc)
            return
        self._keys = {k.kid: k for k in keys.keys if k.kid is not None}
        log.info("fetched %d signing keys for %s", len(self._keys), self.config.issuer)

    async def _get(self, url: str) -> dict[str, Any]:
        response = await self._http.get(url)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


class OIDCVerifier:
    def __init__(self, issuers: tuple[OIDCIssuer, ...], http: httpx.AsyncClient) -> None:
        self._issuers = {config.issuer: _IssuerKeys(config, http) for config in issuers}

    async def identify(self, token: str) -> Identity:
        """The token's identity; raises InvalidToken when any check fails."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a signed JWT")
        header, unverified = _segment(parts[0]), _segment(parts[1])
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise InvalidToken("malformed token")
        issuer = self._issuers.get(str(unverified.get("iss", "")).rstrip("/"))
        if issuer is None:
            raise InvalidToken("unknown issuer")
        config = issuer.config
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in config.algorithms:
            raise InvalidToken(f"algorithm {algorithm!r} is not allowed")
        if not isinstance(kid, str):
            raise InvalidToken("no key id")
        key = await issuer.key(kid)
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm]).claims
            self._registry(config).validate(claims)
        except JoseError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        subject = claims.get(config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("no subject")
        name = claims.get(config.name_claim)
        return Identity(
            subject=subject, method="oidc",
            display_name=name if isinstance(name, str) and name else subject,
            groups=_claim(claims, config.groups_claim),
            idp_roles=_claim(claims, config.roles_claim),
        )

    @staticmethod
    def _registry(config: OIDCIssuer) -> JWTClaimsRegistry:
        required: dict[str, Any] = {claim: {"essential": True} for claim in config.required_claims}
        return JWTClaimsRegistry(
            leeway=config.leeway, **{
                **required,
                "iss": {"essential": True, "value": config.issuer},
                "aud": {"essential": True, "value": config.audience},
                "exp": {"essential": True},
            })
