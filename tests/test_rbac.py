"""Authorization decisions over a realistic policy: departments, AD groups, denies, globs, caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import Forbidden
from gateway.policy import Caps, Range
from gateway.policy_source import load_policy
from gateway.rbac import Authorizer, capped, explain, merge_caps
from inference.types import Sampling

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "examples" / "departments.yaml"
GROUP = "CN={},OU=Groups,DC=corp,DC=example,DC=com"


@pytest.fixture(scope="module")
def authorizer() -> Authorizer:
    return Authorizer(load_policy(POLICY))


def roles_of(authorizer: Authorizer, *, subject: str = "someone", groups: tuple[str, ...] = (),
             idp_roles: tuple[str, ...] = (), key_role: str | None = None) -> frozenset[str]:
    return authorizer.source.policy.roles_of(
        subject=subject, groups=frozenset(GROUP.format(g) for g in groups),
        idp_roles=frozenset(idp_roles), api_key_role=key_role)


def rule_line(number: int) -> int:
    """The line of the policy file where rule ``number`` (1-based) starts."""
    lines = POLICY.read_text().splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if line.startswith("  - description:")]
    return starts[number - 1]


CASES = [
    # who, action, model, allowed, deciding rule (None: deny by default)
    ({"groups": ("Analysts",)}, "chat", ("smollm2:135m",), True, 3),
    ({"groups": ("analysts",)}, "chat", ("smollm2:135m",), True, 3),  # DNs fold case
    ({"idp_roles": ("analyst",)}, "complete", ("phi-3-mini",), True, 3),
    ({"groups": ("Analysts",)}, "chat", ("llama3:8b",), False, None),  # outside their globs
    ({"groups": ("Analysts",)}, "embed", ("smollm2:135m",), False, None),
    ({"groups": ("Analysts",)}, "chat", ("finance-forecaster",), False, 6),
    ({"groups": ("Engineering",)}, "chat", ("llama3:8b",), True, 4),
    ({"groups": ("Engineering",)}, "embed", ("finance-forecaster",), False, 6),  # deny wins
    ({"groups": ("Finance",)}, "chat", ("finance-forecaster",), True, 5),
    ({"groups": ("Finance", "Contractors")}, "chat", ("finance-forecaster",), False, 6),
    ({"groups": ("Contractors",)}, "chat", ("smollm2:135m",), True, 7),
    ({"groups": ("Contractors",)}, "chat", ("smollm2:360m",), False, None),
    ({"groups": ("Contractors",)}, "complete", ("smollm2:135m",), False, 8),
    # an alias cannot side-step a deny: any of the model's names matching the glob counts
    ({"groups": ("Engineering",)}, "chat", ("fin-alias", "finance-forecaster"), False, 6),
    ({"key_role": "indexer"}, "embed", ("smollm2:135m",), True, 9),
    ({"key_role": "indexer"}, "chat", ("smollm2:135m",), False, None),
    ({"key_role": "indexer"}, "models:list", (), False, None),
    ({"key_role": "admin"}, "policy:write", (), True, 1),
    ({"key_role": "admin"}, "chat", ("finance-forecaster",), False, 6),  # even admins
    ({"idp_roles": ("auditor",)}, "audit:read", (), True, 2),
    ({"idp_roles": ("auditor",)}, "policy:write", (), False, None),
    ({"idp_roles": ("auditor",)}, "chat", ("smollm2:135m",), False, None),
    ({"subject": "alice"}, "chat", ("preview-7b",), True, 10),
    ({"subject": "bob"}, "chat", ("preview-7b",), False, None),
    ({}, "models:list", (), False, None),  # no role at all: deny by default
]


@pytest.mark.parametrize(("who", "action", "names", "allowed", "rule"), CASES)
def test_decisions(authorizer: Authorizer, who: dict[str, object], action: str,
                   names: tuple[str, ...], allowed: bool, rule: int | None) -> None:
    roles = roles_of(authorizer, **who)  # type: ignore[arg-type]
    decision = authorizer.decide(roles, action, names)  # type: ignore[arg-type]
    assert decision.allowed is allowed, decision.reason
    assert decision.rule == (None if rule is None else rule - 1)
    if rule is None:
        assert decision.location is None
        assert "no rule allows" in decision.reason
    else:
        assert decision.location == f"{POLICY}:{rule_line(rule)}"
    if not allowed:
        with pytest.raises(Forbidden):
            authorizer.authorize(roles, action, names)  # type: ignore[arg-type]


def test_explain_names_roles_rule_and_line(authorizer: Authorizer) -> None:
    result = explain(authorizer, subject="bob", groups=frozenset({GROUP.format("Engineering")}),
                     idp_roles=frozenset(), api_key_role=None, action="chat",
                     model_names=("finance-forecaster",))
    assert result["allowed"] is False
    assert result["roles"] == ["engineering"]
    assert result["rule"] == 6
    assert result["location"] == f"{POLICY}:{rule_line(6)}"
    assert "denied by rule 6" in str(result["reason"])
    allowed = explain(authorizer, subject="x", groups=frozenset({GROUP.format("Analysts")}),
                      idp_roles=frozenset(), api_key_role=None, action="chat",
                      model_names=("smollm2:135m",))
    assert allowed["caps"] == {"max_tokens": 1024, "num_ctx": 2048,
                               "temperature": {"min": 0.0, "max": 1.0}}


def test_model_listing_filter(authorizer: Authorizer) -> None:
    analyst = roles_of(authorizer, groups=("Analysts",))
    assert authorizer.may_use(analyst, ("smollm2:135m",))
    assert not authorizer.may_use(analyst, ("llama3:8b",))
    assert not authorizer.may_use(analyst, ("finance-forecaster",))


def test_caps_merge_to_the_most_permissive() -> None:
    analysts = Caps(max_tokens=1024, num_ctx=2048, temperature=Range(min=0.0, max=1.0))
    engineering = Caps(max_tokens=4096)
    merged = merge_caps([analysts, engineering])
    assert merged.max_tokens == 4096
    assert merged.num_ctx is None  # engineering has no window cap
    assert merged.temperature is None
    assert merge_caps([analysts, Caps(max_tokens=10, num_ctx=4096, temperature=Range(
        min=0.5, max=1.5))]) == Caps(max_tokens=1024, num_ctx=4096,
                                     temperature=Range(min=0.0, max=1.5))


@pytest.mark.parametrize(("asked", "error"), [
    (Sampling(num_predict=2000), "max_tokens 2000 exceeds your cap of 1024"),
    (Sampling(num_ctx=4096), "num_ctx 4096 exceeds your cap of 2048"),
    (Sampling(temperature=1.5), "temperature 1.5 is outside your allowed range"),
])
def test_requests_beyond_caps_are_refused(asked: Sampling, error: str) -> None:
    caps = Caps(max_tokens=1024, num_ctx=2048, temperature=Range(min=0.0, max=1.0))
    with pytest.raises(Forbidden, match=error):
        capped(asked, Sampling(), caps)


def test_caps_fill_in_and_bring_defaults_within() -> None:
    caps = Caps(max_tokens=1024, num_ctx=2048, temperature=Range(min=0.0, max=0.5))
    defaults = Sampling(temperature=0.7, num_ctx=4096, num_predict=-1)
    result = capped(Sampling(), defaults, caps)
    assert result.num_predict == 1024  # unset and unlimited by default: the cap
    assert result.num_ctx == 2048
    assert result.temperature == 0.5  # the model's default, brought within the range
    within = capped(Sampling(num_predict=100, temperature=0.2), defaults, caps)
    assert within.num_predict == 100
    assert within.temperature == 0.2
    assert capped(Sampling(num_predict=5000), defaults, Caps()) == Sampling(num_predict=5000)
