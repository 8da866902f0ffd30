"""Who is calling, as every later stage sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["oidc", "ldap", "api_key"]


@dataclass(frozen=True, slots=True)
class Identity:
    """What an authenticator proved, before the policy maps it onto Vagt roles."""

    subject: str
    method: Method
    display_name: str
    groups: frozenset[str] = frozenset()
    idp_roles: frozenset[str] = frozenset()
    api_key_role: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    method: Method
    display_name: str
    groups: frozenset[str]
    roles: frozenset[str]  # Vagt roles, from the policy's role mapping
