"""The policy: what is allowed. Admins edit it as YAML; the gateway validates it strictly.

Sections so far: ``identity`` (how callers prove who they are) and ``roles`` (which identities
hold which Vagt role). Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

AsymmetricAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
]
Seconds = Annotated[float, Field(ge=0)]


class PolicyError(Exception):
    """The policy file is unreadable or invalid; the message names file and problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OIDCIssuer(_Strict):
    """An OpenID Provider whose JWT access tokens Vagt accepts."""

    issuer: str
    audience: str
    # Only asymmetric algorithms: "none" and HMAC (which a public key could forge) cannot be set.
    algorithms: tuple[AsymmetricAlgorithm, ...] = Field(default=("RS256", "ES256"), min_length=1)
    subject_claim: str = "sub"
    name_claim: str = "preferred_username"
    roles_claim: str | None = None  # a dotted path, e.g. realm_access.roles
    groups_claim: str | None = None  # e.g. groups
    required_claims: tuple[str, ...] = ("sub", "exp", "iat")
    leeway: Annotated[int, Field(ge=0, le=300)] = 30
    jwks_cooldown: Seconds = 30.0  # at most one JWKS refresh per issuer per cool-down

    @field_validator("issuer")
    @classmethod
    def _https(cls, issuer: str) -> str:
        parts = urlsplit(issuer)
        loopback = _is_loopback(parts.hostname or "")
        if parts.scheme == "https" or (parts.scheme == "http" and loopback):
            return issuer.rstrip("/")
        raise ValueError("an issuer must be an https:// URL (http:// only on loopback)")


class LDAPDirectory(_Strict):
    """Active Directory or another LDAP directory that checks HTTP Basic credentials."""

    url: Annotated[str, Field(pattern=r"^ldaps?://[^/]+/?$")]
    start_tls: bool = False
    ca_file: Path | None = None  # trust anchors for LDAPS/StartTLS; default: the system's
    bind_dn: str
    # The name of the environment variable holding the service password: no secret in the YAML.
    bind_password_env: str = "VAGT_LDAP_BIND_PASSWORD"  # noqa: S105
    user_base: str
    user_filter: str = "(sAMAccountName={username})"
    subject_attribute: str = "sAMAccountName"
    group_base: str | None = None
    nested_groups: Literal["auto", "matching_rule", "walk", "off"] = "auto"
    max_depth: Annotated[int, Field(ge=1, le=32)] = 8
    cache_ttl: Seconds = 60.0
    pool_size: Annotated[int, Field(ge=1, le=64)] = 4
    timeout: Annotated[float, Field(gt=0)] = 5.0
    allow_plain_http: bool = False  # accept Basic credentials without TLS (local testing only)

    @field_validator("user_filter")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{username}" not in value:
            raise ValueError("user_filter must contain {username}")
        return value


class APIKeys(_Strict):
    enabled: bool = True
    cache_ttl: Seconds = 2.0  # how long a verified key is trusted before the store is asked again


class Identity(_Strict):
    oidc: tuple[OIDCIssuer, ...] = ()
    ldap: LDAPDirectory | None = None
    api_keys: APIKeys = APIKeys()


class Members(_Strict):
    """Who holds a role. Group DNs compare case-insensitively, as directories do."""

    idp_roles: tuple[str, ...] = ()  # role values from an OIDC token's roles claim
    groups: tuple[str, ...] = ()  # AD/LDAP group DNs, or an OIDC token's groups
    api_key_roles: tuple[str, ...] = ()  # the role an API key was created with
    subjects: tuple[str, ...] = ()  # individual users or service accounts


class Role(_Strict):
    description: str = ""
    members: Members = Members()


class Policy(_Strict):
    version: Literal[1]
    identity: Identity = Identity()
    roles: dict[str, Role] = {}

    def roles_of(self, *, subject: str, groups: frozenset[str], idp_roles: frozenset[str],
                 api_key_role: str | None) -> frozenset[str]:
        """The Vagt roles an identity holds."""
        folded = {g.casefold() for g in groups}
        held = set()
        for name, role in self.roles.items():
            m = role.members
            if (subject in m.subjects or not idp_roles.isdisjoint(m.idp_roles)
                    or any(g.casefold() in folded for g in m.groups)
                    or (api_key_role is not None and api_key_role in m.api_key_roles)):
                held.add(name)
        return frozenset(held)


def load_policy(path: Path) -> Policy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors())
        raise PolicyError(f"{path}: {problems}") from None
