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
import hashlib
import json
import logging
import time
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from gateway.auth.principal import Identity
from gateway.policy import OIDCIssuer

MAX_TOKEN_BYTES = 16 * 1024
log = logging.getLogger("vagt.auth.oidc")


class InvalidToken(Exception):
    """Why a token was refused (for the log only; the client gets one generic message)."""


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


class _Issuer:
    """One issuer: its checks, and its signing keys — discovered, cached, refreshed on an
    unknown kid."""

    def __init__(self, config: OIDCIssuer, http: httpx.AsyncClient) -> None:
        self.config = config
        self.signatures = jws.JWSRegistry(algorithms=list(config.algorithms))
        options: dict[str, ClaimsOption] = {c: {"essential": True} for c in config.required_claims}
        options["iss"] = {"essential": True, "value": config.issuer}
        options["aud"] = {"essential": True, "value": config.audience}
        options["exp"] = {"essential": True}
        self.claims = JWTClaimsRegistry(None, config.leeway, **options)
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
        self._issuers = {config.issuer: _Issuer(config, http) for config in issuers}
        self._verified: dict[bytes, tuple[float, Identity]] = {}

    async def identify(self, token: str) -> Identity:
        """The token's identity; raises InvalidToken when any check fails.

        A verified token is remembered (by its SHA-256) until it expires or for the issuer's
        ``token_cache_ttl``, whichever comes first: services reuse one access token for many
        calls, and a repeat costs a hash instead of a signature check.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        fingerprint = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self._verified.get(fingerprint)
        if cached is not None and cached[0] > now:
            return cached[1]
        identity, until = await self._verify(token)
        if until > now:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[fingerprint] = (until, identity)
        return identity

    async def _verify(self, token: str) -> tuple[Identity, float]:
        try:
            signed = jws.extract_compact(token.encode())
            header = signed.headers()
            claims = json.loads(signed.payload or b"")
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken(f"malformed token: {type(exc).__name__}") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed token: the payload is not an object")
        issuer = self._issuers.get(str(claims.get("iss", "")).rstrip("/"))
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
            if not jws.validate_compact(signed, key, registry=issuer.signatures):
                raise InvalidToken("bad signature")
            issuer.claims.validate(claims)
        except JoseError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        subject = claims.get(config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("no subject")
        name = claims.get(config.name_claim)
        identity = Identity(
            subject=subject, method="oidc",
            display_name=name if isinstance(name, str) and name else subject,
            groups=_claim(claims, config.groups_claim),
            idp_roles=_claim(claims, config.roles_claim),
        )
        return identity, min(float(claims["exp"]), time.time() + config.token_cache_ttl)
