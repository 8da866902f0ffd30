"""Cost of authentication per request, on this machine.

- OIDC: a real access token from a real oidc-provider (RS256 and ES256), JWKS cache warm:
  verifying a token not seen before (signature, algorithm and claims checks), the whole
  `Authenticator.authenticate` for a token seen before (the verified-token cache), and
  joserfc's bare `jwt.decode` with the public key (the floor: the signature check alone).
- LDAP: a cached login (a real slapd answers the first one).
- API keys: a key within its cache TTL (SQLite behind it).

Usage: python bench/auth.py [--rounds N]   (needs `make test-servers` for slapd and the IdP)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from micro import report, summary

from gateway.auth.apikeys import APIKeyAuthenticator, create_key
from gateway.auth.authenticator import Authenticator
from gateway.auth.keystore import KeyStore
from gateway.auth.ldap import LDAPAuthenticator
from gateway.auth.oidc import OIDCVerifier
from gateway.policy import Policy
from gateway.store import open_database
from tests.servers.idp import IdentityProvider
from tests.servers.ldap import SERVICE_DN, SERVICE_PW, SUFFIX, USERS, Directory


async def timed(call: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    for _ in range(200):  # warm up
        await call()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        await call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def policy(idp: IdentityProvider, directory: Directory) -> Policy:
    return Policy.model_validate({
        "version": 1,
        "identity": {
            "oidc": [{"issuer": idp.issuer, "audience": "vagt",
                      "roles_claim": "realm_access.roles", "groups_claim": "groups"}],
            "ldap": {"url": directory.url, "bind_dn": SERVICE_DN,
                     "bind_password_env": "BENCH_LDAP_PW", "user_base": f"ou=people,{SUFFIX}",
                     "user_filter": "(uid={username})", "subject_attribute": "uid",
                     "cache_ttl": 3600},
            "api_keys": {"cache_ttl": 3600},
        },
        "roles": {f"role-{i}": {"members": {"idp_roles": [f"r{i}"], "groups": [f"g{i}"]}}
                  for i in range(50)},
    })


async def measure(idp: IdentityProvider, directory: Directory, rounds: int,
                  workdir: Path) -> dict[str, dict[str, float]]:
    config = policy(idp, directory)
    db = await open_database(f"sqlite:///{workdir / 'keys.db'}")
    store = await KeyStore.open(db)
    key = (await create_key(store, "bench", "user")).secret
    assert config.identity.ldap is not None
    results: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient() as http:
        ldap = LDAPAuthenticator(config.identity.ldap)
        keys = APIKeyAuthenticator(store, 3600)
        authenticator = Authenticator(config, keys, OIDCVerifier(config.identity.oidc, http), ldap)
        for client, alg in (("reporting", "RS256"), ("signed-es", "ES256")):
            token = idp.token(client)
            headers = {"authorization": f"Bearer {token}"}
            results[f"oidc {alg}: authenticate, token seen before (cache)"] = summary(await timed(
                lambda h=headers: authenticator.authenticate(h, secure=True), rounds))
            cold = OIDCVerifier(config.identity.oidc, http)
            await cold.identify(token)  # warm the JWKS

            async def verify(t: str = token, v: OIDCVerifier = cold) -> object:
                v._verified.clear()  # every call checks the signature and the claims
                return await v.identify(t)
            results[f"oidc {alg}: verify a new token"] = summary(await timed(verify, rounds))
            key_for = (RSAKey.import_key(idp.rsa.as_dict(private=False)) if alg == "RS256"
                       else ECKey.import_key(idp.ec.as_dict(private=False)))

            async def bare(t: str = token, k: object = key_for, a: str = alg) -> object:
                return jwt.decode(t, k, algorithms=[a])  # type: ignore[arg-type]
            results[f"oidc {alg}: joserfc decode alone (floor)"] = summary(
                await timed(bare, rounds))
        basic = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
        ldap_headers = {"authorization": f"Basic {basic}"}
        results["ldap: cached login"] = summary(await timed(
            lambda: authenticator.authenticate(ldap_headers, secure=True), rounds))
        results["api key: cached"] = summary(await timed(
            lambda: authenticator.authenticate({"x-api-key": key}, secure=True), rounds))
        ldap.close()
        await keys.close()
    await db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    os.environ["BENCH_LDAP_PW"] = SERVICE_PW
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "idp").mkdir()
        (workdir / "ldap").mkdir()
        idp, directory = IdentityProvider(workdir / "idp"), Directory(workdir / "ldap")
        try:
            results = asyncio.run(measure(idp, directory, args.rounds, workdir))
        finally:
            idp.stop()
            directory.stop()
    report("auth", "case", results)


if __name__ == "__main__":
    main()
