"""A real OpenID Provider (npm `oidc-provider`, tests/servers/idp.mjs) run by a test fixture."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

HERE = Path(__file__).resolve().parent
AUDIENCE = "vagt"

# Clients of the IdP: service accounts with the roles and groups their tokens carry.
CLIENTS = [
    {"client_id": "reporting", "client_secret": "reporting-secret", "name": "Reporting Service",
     "roles": ["vagt-user"], "groups": ["analytics"]},
    {"client_id": "ops", "client_secret": "ops-secret", "roles": ["vagt-admin"], "groups": []},
    {"client_id": "signed-es", "client_secret": "es-secret", "alg": "ES256",
     "roles": ["vagt-user"], "groups": []},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class IdentityProvider:
    """oidc-provider on a fixed loopback port (so a restart keeps the issuer), with keys this
    fixture generates: tests can rotate them, and forge tokens with them for the attack suite."""

    def __init__(self, workdir: Path, token_ttl: int = 300) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.token_ttl = token_ttl
        self.generation = 0
        self.process: subprocess.Popen[str] | None = None
        (workdir / "clients.json").write_text(json.dumps(CLIENTS))
        self.rsa, self.ec = self._new_keys()
        self.start()

    def _new_keys(self) -> tuple[RSAKey, ECKey]:
        self.generation += 1
        rsa = RSAKey.generate_key(2048, parameters={
            "kid": f"rsa-{self.generation}", "alg": "RS256", "use": "sig"})
        ec = ECKey.generate_key("P-256", parameters={
            "kid": f"ec-{self.generation}", "alg": "ES256", "use": "sig"})
        return rsa, ec

    def start(self) -> None:
        keys = {"keys": [self.rsa.as_dict(private=True), self.ec.as_dict(private=True)]}
        (self.workdir / "jwks.json").write_text(json.dumps(keys))
        self.process = subprocess.Popen(
            ["node", str(HERE / "idp.mjs")], cwd=HERE, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "PORT": str(self.port),
                 "JWKS_FILE": str(self.workdir / "jwks.json"),
                 "CLIENTS_FILE": str(self.workdir / "clients.json"),
                 "TOKEN_TTL": str(self.token_ttl), "NODE_ENV": "production"},
        )
        assert self.process.stdout is not None
        output = []
        for line in self.process.stdout:  # Node 20 draws a warning first; the issuer follows
            if line.strip() == self.issuer:
                return
            output.append(line)
        self.stop()
        raise RuntimeError(f"the IdP did not start: {''.join(output)[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def rotate(self) -> None:
        """Restart with new signing keys (new kids); the old ones are gone from the JWKS."""
        self.stop()
        self.rsa, self.ec = self._new_keys()
        self.start()

    def token(self, client_id: str) -> str:
        """A real access token, by the client-credentials grant."""
        client = next(c for c in CLIENTS if c["client_id"] == client_id)
        response = httpx.post(f"{self.issuer}/token", auth=(client_id, client["client_secret"]),
                              data={"grant_type": "client_credentials", "scope": "api",
                                    "resource": "urn:vagt"})
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(f"{self.issuer}/test/counts").json()
        return counts

    # --- forging, for the attack suite -----------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": "forged", "iat": now,
                  "exp": now + 300, "jti": "x", "client_id": "reporting"}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: RSAKey | ECKey | None = None,
             header: dict[str, Any] | None = None) -> str:
        key = key or self.rsa
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        full = {"alg": alg, "kid": key.kid, "typ": "at+jwt", **(header or {})}
        return jwt.encode(full, claims, key, algorithms=[full["alg"]])

    def public_jwks(self) -> KeySet:
        return KeySet([RSAKey.import_key(self.rsa.as_dict(private=False)),
                       ECKey.import_key(self.ec.as_dict(private=False))])
