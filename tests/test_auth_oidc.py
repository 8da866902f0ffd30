"""OIDC bearer tokens against a real OpenID Provider, and the attack suite."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from gateway.auth.oidc import InvalidToken, OIDCVerifier
from gateway.auth.principal import Identity
from gateway.policy import OIDCIssuer
from tests.servers.idp import IdentityProvider


def config(idp: IdentityProvider, **overrides: Any) -> OIDCIssuer:
    return OIDCIssuer.model_validate({
        "issuer": idp.issuer, "audience": "vagt", "roles_claim": "realm_access.roles",
        "groups_claim": "groups", "jwks_cooldown": 0.5, **overrides})


def identify(idp: IdentityProvider, token: str, **overrides: Any) -> Identity:
    async def run() -> Identity:
        async with httpx.AsyncClient() as http:
            return await OIDCVerifier((config(idp, **overrides),), http).identify(token)
    return asyncio.run(run())


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def attacker() -> Iterator[dict[str, Any]]:
    """An HTTP server an attacker controls; it records every request the gateway makes to it."""
    hits: list[str] = []
    key = RSAKey.generate_key(2048, parameters={"kid": "attacker"})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "hits": hits, "key": key}
    server.shutdown()


# --- real tokens ---------------------------------------------------------------------------------

def test_real_rs256_token(idp: IdentityProvider) -> None:
    identity = identify(idp, idp.token("reporting"))
    assert identity.subject == "reporting"
    assert identity.method == "oidc"
    assert identity.display_name == "Reporting Service"
    assert identity.idp_roles == {"vagt-user"}
    assert identity.groups == {"analytics"}


def test_real_es256_token(idp: IdentityProvider) -> None:
    token = idp.token("signed-es")
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "ES256"
    assert identify(idp, token).subject == "signed-es"


def test_an_algorithm_off_the_allow_list_is_refused(idp: IdentityProvider) -> None:
    with pytest.raises(InvalidToken, match="not allowed"):
        identify(idp, idp.token("signed-es"), algorithms=["RS256"])


def test_key_rotation_without_restart(idp: IdentityProvider) -> None:
    async def run() -> None:
        async with httpx.AsyncClient() as http:
            verifier = OIDCVerifier((config(idp, token_cache_ttl=0),), http)
            before = idp.token("reporting")
            assert (await verifier.identify(before)).subject == "reporting"
            idp.rotate()
            await asyncio.sleep(0.6)  # past the cool-down
            after = idp.token("reporting")
            assert (await verifier.identify(after)).subject == "reporting"
            with pytest.raises(InvalidToken):  # the old key left the JWKS
                await verifier.identify(before)
    asyncio.run(run())


def test_unknown_kids_refresh_the_jwks_at_most_once_per_cooldown(idp: IdentityProvider) -> None:
    async def run() -> None:
        async with httpx.AsyncClient() as http:
            verifier = OIDCVerifier((config(idp, jwks_cooldown=30),), http)
            await verifier.identify(idp.token("reporting"))  # discovery + first JWKS fetch
            fetched = idp.counts().get("/jwks", 0)
            stranger = RSAKey.generate_key(2048)
            for i in range(50):
                forged = idp.sign(idp.claims(), key=stranger, header={"kid": f"flood-{i}"})
                with pytest.raises(InvalidToken, match="unknown signing key"):
                    await verifier.identify(forged)
            assert idp.counts().get("/jwks", 0) == fetched
    asyncio.run(run())


def test_verified_tokens_are_cached_until_they_expire(idp: IdentityProvider) -> None:
    async def run() -> None:
        async with httpx.AsyncClient() as http:
            verifier = OIDCVerifier((config(idp, leeway=0, token_cache_ttl=60),), http)
            token = idp.sign(idp.claims(exp=int(time.time()) + 1))
            first = await verifier.identify(token)
            started = time.perf_counter()
            assert await verifier.identify(token) is first  # from the cache
            assert time.perf_counter() - started < 0.001
            await asyncio.sleep(1.2)
            with pytest.raises(InvalidToken):  # expired: the cache does not outlive exp
                await verifier.identify(token)
    asyncio.run(run())


def test_leeway_accepts_small_clock_skew(idp: IdentityProvider) -> None:
    now = int(time.time())
    token = idp.sign(idp.claims(exp=now - 10, iat=now + 10, nbf=now + 10))
    assert identify(idp, token).subject == "forged"


# --- the attack suite ----------------------------------------------------------------------------

def _alg_none(idp: IdentityProvider) -> str:
    return f"{b64({'alg': 'none', 'kid': idp.rsa.kid})}.{b64(idp.claims())}."


def _hs256_with_public_key(idp: IdentityProvider) -> str:
    public_pem = idp.rsa.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': idp.rsa.kid})}.{b64(idp.claims())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _tampered(idp: IdentityProvider) -> str:
    header, payload, signature = idp.token("reporting").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "ops"
    return f"{header}.{b64(claims)}.{signature}"


def _oversized(idp: IdentityProvider) -> str:
    return idp.sign(idp.claims(padding="x" * 17_000))


ATTACKS: dict[str, Callable[[IdentityProvider], str]] = {
    "alg none": _alg_none,
    "HS256 signed with the IdP's public key": _hs256_with_public_key,
    "unknown kid": lambda idp: idp.sign(idp.claims(), key=RSAKey.generate_key(2048),
                                        header={"kid": "not-a-known-kid"}),
    "RS256 header over the EC key's kid": lambda idp: idp.sign(
        idp.claims(), header={"kid": idp.ec.kid}),
    "expired": lambda idp: idp.sign(idp.claims(exp=int(time.time()) - 120)),
    "nbf in the future": lambda idp: idp.sign(idp.claims(nbf=int(time.time()) + 600)),
    "iat in the future": lambda idp: idp.sign(idp.claims(iat=int(time.time()) + 600)),
    "wrong iss": lambda idp: idp.sign(idp.claims(iss="https://evil.example")),
    "wrong aud": lambda idp: idp.sign(idp.claims(aud="someone-else")),
    "no exp": lambda idp: idp.sign(idp.claims(exp=None)),
    "no sub": lambda idp: idp.sign(idp.claims(sub=None)),
    "tampered payload": _tampered,
    "truncated": lambda idp: idp.token("reporting")[:-12],
    "garbage": lambda idp: "not.a.token",
    "no dots": lambda idp: "eyJhbGciOiJSUzI1NiJ9",
    "oversized": _oversized,
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_refused(idp: IdentityProvider, attack: str) -> None:
    with pytest.raises(InvalidToken):
        identify(idp, ATTACKS[attack](idp))


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
def test_key_location_headers_are_ignored(idp: IdentityProvider, attacker: dict[str, Any],
                                          header: str) -> None:
    """Signed by the attacker's key, naming the real kid, pointing at the attacker's keys."""
    key: RSAKey = attacker["key"]
    value: Any = (key.as_dict(private=False) if header == "jwk"
                  else f"{attacker['url']}/keys.json")
    token = idp.sign(idp.claims(), key=key, header={"kid": idp.rsa.kid, header: value})
    with pytest.raises(InvalidToken):
        identify(idp, token)
    assert attacker["hits"] == []  # the gateway never fetched the attacker's URL


def test_oversized_token_is_refused_before_parsing(idp: IdentityProvider) -> None:
    with pytest.raises(InvalidToken, match="too large"):
        identify(idp, "x" * (16 * 1024 + 1))
