"""The policy: what is allowed. Admins edit it as YAML; the gateway validates it strictly.

Sections: ``identity`` (how callers prove who they are), ``roles`` (which identities hold which
Vagt role, and the caps on their requests) and ``rules`` (which roles may do what on which
models). Unknown keys are errors, never silently ignored. Loading with positions for error
messages is in ``policy_source``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from gateway.durations import parse_lifetime

AsymmetricAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
]
Seconds = Annotated[float, Field(ge=0)]


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
    token_cache_ttl: Seconds = 60.0  # a verified token is remembered this long (or to its exp)

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
    # AD accepts either login form: "alice" or "alice@corp.example.com".
    user_filter: str = "(|(sAMAccountName={username})(userPrincipalName={username}))"
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


class Range(_Strict):
    min: float
    max: float


class Caps(_Strict):
    """Limits on request parameters for a role. With several granting roles, the most permissive
    value of each applies. A request beyond a cap is refused (403); an unset max_tokens becomes
    the cap."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None  # OpenAI max_tokens, Ollama num_predict
    num_ctx: Annotated[int, Field(ge=16)] | None = None
    temperature: Range | None = None


class Role(_Strict):
    description: str = ""
    members: Members = Members()
    caps: Caps = Caps()


Action = Literal["chat", "complete", "embed", "models:list", "policy:read", "policy:write",
                 "audit:read", "keys:admin"]
MODEL_ACTIONS: tuple[Action, ...] = ("chat", "complete", "embed")


class Rule(_Strict):
    """Allow or deny actions to roles, on models matching glob patterns. Denies win; anything no
    rule allows is denied."""

    description: str = ""
    roles: tuple[str, ...] = Field(min_length=1)
    allow: tuple[Action, ...] = ()
    deny: tuple[Action, ...] = ()
    models: tuple[str, ...] | None = None  # globs; model actions only; absent means every model

    @model_validator(mode="after")
    def _one_effect(self) -> Rule:
        if bool(self.allow) == bool(self.deny):
            raise ValueError("a rule needs exactly one of allow or deny")
        if self.models is not None and not any(a in MODEL_ACTIONS for a in self.actions):
            raise ValueError("models only apply to the actions chat, complete and embed")
        return self

    @property
    def effect(self) -> Literal["allow", "deny"]:
        return "allow" if self.allow else "deny"

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.allow or self.deny


_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


_RATE = r"^\s*[1-9][0-9]*\s*/\s*(second|minute|hour|day)\s*$"


def _rate_text(value: object) -> object:
    if isinstance(value, str) and not re.match(_RATE, value):
        raise ValueError(f"a rate is written COUNT/PERIOD, e.g. 60/minute (periods: "
                         f"{', '.join(_PERIODS)})")
    return value


RateText = Annotated[str, BeforeValidator(_rate_text),
                     Field(pattern=_RATE, description="COUNT/PERIOD, e.g. 60/minute")]


def parse_rate(text: str) -> tuple[int, float]:
    """(count, seconds) from "60/minute"."""
    count, _, period = text.partition("/")
    return int(count), _PERIODS[period.strip()]


class Limit(_Strict):
    """Limits counted per caller (subject); a request needs every limit that applies to allow it."""

    requests: RateText | None = None
    tokens: RateText | None = None  # prompt + completion tokens
    concurrent: Annotated[int, Field(ge=1)] | None = None
    daily_tokens: Annotated[int, Field(ge=1)] | None = None  # calendar day, UTC
    monthly_tokens: Annotated[int, Field(ge=1)] | None = None  # calendar month, UTC


class Limits(_Strict):
    on_store_failure: Literal["closed", "open"] = "closed"
    roles: dict[str, Limit] = {}  # for every member of the role
    subjects: dict[str, Limit] = {}  # for one user or service (key:NAME for an API key)
    models: dict[str, Limit] = {}  # model glob → for every caller, on the matching models


def _lifetime(value: object) -> object:
    return parse_lifetime(value) if isinstance(value, str) else value


Lifetime = Annotated[float, BeforeValidator(_lifetime, json_schema_input_type=float | str),
                     Field(gt=0, description="seconds, or a duration such as 90d, 12h, 30m")]


class AuditPolicy(_Strict):
    """How the audit log behaves. Records hold prompt and response text only when ``bodies``
    asks for it, and then never a PII value."""

    on_sink_failure: Literal["buffered", "strict"] = "buffered"  # strict: refuse requests
    retention: Lifetime | None = None  # records older than this are pruned; None: kept forever
    # "redacted": records also keep the request's text and the model's answer, with every
    # entity the recognizers find replaced by its type (<EMAIL>), whatever the caller's modes
    bodies: Literal["none", "redacted"] = "none"


Entity = Literal["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "DK_CPR", "IP_ADDRESS",
                 "SECRET", "PERSON", "LOCATION", "ORGANIZATION", "*"]
Mode = Literal["mask", "hash", "pseudonymize", "block", "off"]
ResponseMode = Literal["mask", "hash", "block", "off"]
# From the most permissive to the strictest: where several of a caller's roles set an entity,
# the most permissive wins (roles grant, as for caps and limits).
MODES: tuple[Mode, ...] = ("off", "pseudonymize", "hash", "mask", "block")


class RedactionModes(_Strict):
    """What happens to each entity type ("*": every other type), in requests (what the model
    sees) and in responses (what the caller gets)."""

    request: dict[Entity, Mode] = {}
    response: dict[Entity, ResponseMode] = {}


class NerSettings(_Strict):
    """PERSON, LOCATION and ORGANIZATION from a spaCy pipeline (pip install 'vagt[ner]' and a
    pipeline such as en_core_web_sm): an installed package's name, or a directory."""

    model: str = Field(min_length=1)
    score: Annotated[float, Field(ge=0, le=1)] = 0.85  # spaCy gives no confidence of its own


def ner_unavailable(model: str) -> str | None:
    """Why the NER pipeline ``model`` cannot be loaded here (None: it can)."""
    try:
        import spacy  # optional: only a policy that asks for NER needs it
    except ImportError:
        return "redaction.ner needs spaCy: pip install 'vagt[ner]'"
    if spacy.util.is_package(model) or (Path(model) / "config.cfg").is_file():
        return None
    return f"redaction.ner: no spaCy pipeline '{model}' is installed (a package name or a " \
           "directory holding config.cfg)"


class RedactionPolicy(_Strict):
    default: RedactionModes = RedactionModes()  # for every caller
    roles: dict[str, RedactionModes] = {}  # for members of a role, over the default
    thresholds: dict[Entity, Annotated[float, Field(ge=0, le=1)]] = {}  # default 0.5
    phone_regions: tuple[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], ...] = (
        "US", "GB", "DK", "DE")  # where a number without +CC is looked up
    ner: NerSettings | None = None  # names, places, organisations: off unless set

    @property
    def enabled(self) -> bool:
        return any(modes.request or modes.response
                   for modes in (self.default, *self.roles.values()))


class Policy(_Strict):
    version: Literal[1]
    identity: Identity = Identity()
    roles: dict[str, Role] = {}
    rules: tuple[Rule, ...] = ()
    limits: Limits = Limits()
    audit: AuditPolicy = AuditPolicy()
    redaction: RedactionPolicy = RedactionPolicy()

    def roles_of(self, *, subject: str, groups: frozenset[str], idp_roles: frozenset[str],
                 api_key_role: str | None) -> frozenset[str]:
        """The Vagt roles an identity holds (for one-off questions; the gateway keeps a
        RoleMapping per policy version)."""
        return RoleMapping(self).roles_of(subject=subject, groups=groups, idp_roles=idp_roles,
                                          api_key_role=api_key_role)

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-reference errors, each with the path of the offending value."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for index, rule in enumerate(self.rules):
            for position, role_name in enumerate(rule.roles):
                if role_name not in self.roles:
                    found.append((("rules", index, "roles", position),
                                  f"role '{role_name}' in rule {index + 1} is not defined"))
        for name, role in self.roles.items():
            caps = role.caps
            if caps.temperature is not None and caps.temperature.min > caps.temperature.max:
                found.append((("roles", name, "caps", "temperature"),
                              f"role '{name}': temperature min is above max"))
        if self.redaction.ner is not None:
            problem = ner_unavailable(self.redaction.ner.model)
            if problem is not None:
                found.append((("redaction", "ner", "model"), problem))
        for section, names in (("limits", self.limits.roles),
                               ("redaction", self.redaction.roles)):
            for name in names:
                if name not in self.roles:
                    found.append(((section, "roles", name),
                                  f"role '{name}' in {section} is not defined"))
        return found


class RoleMapping:
    """Identity → Vagt roles, indexed by member so a lookup costs what the identity carries, not
    the number of roles."""

    def __init__(self, policy: Policy) -> None:
        self._subjects: dict[str, set[str]] = {}
        self._groups: dict[str, set[str]] = {}
        self._idp_roles: dict[str, set[str]] = {}
        self._key_roles: dict[str, set[str]] = {}
        for name, role in policy.roles.items():
            m = role.members
            for index, values in ((self._subjects, m.subjects), (self._idp_roles, m.idp_roles),
                                  (self._key_roles, m.api_key_roles),
                                  (self._groups, tuple(g.casefold() for g in m.groups))):
                for value in values:
                    index.setdefault(value, set()).add(name)

    def roles_of(self, *, subject: str, groups: frozenset[str], idp_roles: frozenset[str],
                 api_key_role: str | None) -> frozenset[str]:
        held: set[str] = set(self._subjects.get(subject, ()))
        for group in groups:
            held.update(self._groups.get(group.casefold(), ()))
        for role in idp_roles:
            held.update(self._idp_roles.get(role, ()))
        if api_key_role is not None:
            held.update(self._key_roles.get(api_key_role, ()))
        return frozenset(held)
