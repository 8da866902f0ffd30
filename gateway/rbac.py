"""The authorize stage: (roles, action, model) → a decision, explained by the rule behind it.

Deny by default; an explicit deny wins over any allow. A model matches a rule when any of its
names (canonical or alias) matches one of the rule's globs — so a deny cannot be side-stepped
through an alias. Rules are compiled once per policy version into a table keyed by (role,
action); decisions are memoised per (roles, action, model names) for that version.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.errors import Forbidden
from gateway.policy import MODEL_ACTIONS, Action, Caps, Range
from gateway.policy_source import PolicySource
from inference.types import Sampling

Matcher = Callable[[str], object]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    action: str
    model: str | None
    rule: int | None  # index of the deciding rule; None: nothing allowed it (deny by default)
    location: str | None  # "file:line" of that rule
    reason: str
    caps: Caps  # the effective caps when allowed


@dataclass(frozen=True, slots=True)
class _Compiled:
    index: int
    deny: bool
    matches: Matcher | None  # None: every model (or a non-model action)
    roles: frozenset[str]  # the rule's roles


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rules that can decide one action for one set of roles, each once, in policy order."""

    denies: tuple[_Compiled, ...]
    allows: tuple[_Compiled, ...]


def _matcher(patterns: tuple[str, ...] | None) -> Matcher | None:
    if patterns is None or "*" in patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


def merge_caps(caps: Iterable[Caps]) -> Caps:
    """The most permissive of several roles' caps: an absent cap on any role lifts it."""
    caps = list(caps)
    if not caps:
        return Caps()
    tokens = [c.max_tokens for c in caps]
    windows = [c.num_ctx for c in caps]
    ranges = [c.temperature for c in caps]
    return Caps(
        max_tokens=None if None in tokens else max(t for t in tokens if t is not None),
        num_ctx=None if None in windows else max(w for w in windows if w is not None),
        temperature=None if None in ranges else Range(
            min=min(r.min for r in ranges if r is not None),
            max=max(r.max for r in ranges if r is not None)),
    )


class Authorizer:
    def __init__(self, source: PolicySource) -> None:
        self.source = source
        policy = source.policy
        self._table: dict[tuple[str, str], list[_Compiled]] = {}
        for index, rule in enumerate(policy.rules):
            matches = _matcher(rule.models)
            for action in rule.actions:
                # a rule's models narrow its model actions only (not models:list, say)
                compiled = _Compiled(index, rule.effect == "deny",
                                     matches if action in MODEL_ACTIONS else None,
                                     frozenset(rule.roles))
                for role in rule.roles:
                    self._table.setdefault((role, action), []).append(compiled)
        self._caps = {name: role.caps for name, role in policy.roles.items()}
        self._locations = tuple(source.rule_location(i) for i in range(len(policy.rules)))
        self._plans: dict[tuple[frozenset[str], str], _Plan] = {}
        self._merged: dict[frozenset[str], Caps] = {}
        self._memo: dict[tuple[frozenset[str], str, tuple[str, ...]], Decision] = {}

    def decide(self, roles: frozenset[str], action: Action,
               model_names: tuple[str, ...] = ()) -> Decision:
        key = (roles, action, model_names)
        decision = self._memo.get(key)
        if decision is None:
            if len(self._memo) > 50_000:
                self._memo.clear()
            decision = self._memo[key] = self._decide(roles, action, model_names)
        return decision

    def _plan(self, roles: frozenset[str], action: str) -> _Plan:
        plan = self._plans.get((roles, action))
        if plan is None:
            rules = sorted({c.index: c for role in roles
                            for c in self._table.get((role, action), ())}.values(),
                           key=lambda c: c.index)
            plan = self._plans[(roles, action)] = _Plan(
                tuple(c for c in rules if c.deny), tuple(c for c in rules if not c.deny))
        return plan

    def _caps_of(self, granting: frozenset[str]) -> Caps:
        caps = self._merged.get(granting)
        if caps is None:
            caps = self._merged[granting] = merge_caps(self._caps[r] for r in sorted(granting))
        return caps

    def _decide(self, roles: frozenset[str], action: Action,
                names: tuple[str, ...]) -> Decision:
        model = names[0] if names else None
        on = f" on model '{model}'" if model else ""
        plan = self._plan(roles, action)
        for rule in plan.denies:
            if rule.matches is None or any(map(rule.matches, names)):
                return Decision(False, action, model, rule.index, self._locations[rule.index],
                                f"{action}{on} is denied by rule {rule.index + 1}", Caps())
        first: int | None = None
        granting: set[str] = set()
        for rule in plan.allows:
            if rule.matches is None or any(map(rule.matches, names)):
                first = rule.index if first is None else first
                granting |= rule.roles
        if first is None:
            held = ", ".join(sorted(roles)) or "none"
            return Decision(False, action, model, None, None,
                            f"no rule allows {action}{on} for the roles held ({held})", Caps())
        return Decision(True, action, model, first, self._locations[first],
                        f"{action}{on} is allowed by rule {first + 1}",
                        self._caps_of(frozenset(granting & roles)))

    def authorize(self, roles: frozenset[str], action: Action,
                  model_names: tuple[str, ...] = ()) -> Decision:
        decision = self.decide(roles, action, model_names)
        if not decision.allowed:
            raise refusal(decision)
        return decision

    def may_use(self, roles: frozenset[str], model_names: tuple[str, ...]) -> bool:
        """Whether any model action is allowed: what model listings show."""
        return any(self.decide(roles, action, model_names).allowed
                   for action in MODEL_ACTIONS)


def refusal(decision: Decision) -> Forbidden:
    """The 403 for a denied decision: the action and model, never the rule (that is for the
    audit log and for admins' explain)."""
    return Forbidden(f"not permitted: {decision.action}"
                     + (f" on model '{decision.model}'" if decision.model else ""))


def capped(sampling: Sampling, defaults: Sampling, caps: Caps) -> Sampling:
    """``sampling`` within ``caps``. A value the caller asked for beyond a cap is refused; an
    unset max_tokens becomes the cap; a model default beyond a cap is brought within it."""
    update: dict[str, object] = {}
    if caps.max_tokens is not None:
        asked = sampling.num_predict
        if asked is not None and asked > caps.max_tokens:
            raise Forbidden(f"max_tokens {asked} exceeds your cap of {caps.max_tokens}",
                            param="max_tokens")
        if asked is None or asked <= 0:
            default = defaults.num_predict
            update["num_predict"] = (caps.max_tokens if default is None or default <= 0
                                     else min(default, caps.max_tokens))
    if caps.num_ctx is not None:
        if sampling.num_ctx is not None and sampling.num_ctx > caps.num_ctx:
            raise Forbidden(f"num_ctx {sampling.num_ctx} exceeds your cap of {caps.num_ctx}",
                            param="num_ctx")
        window = sampling.num_ctx or defaults.num_ctx
        update["num_ctx"] = caps.num_ctx if window is None else min(window, caps.num_ctx)
    if caps.temperature is not None:
        low, high = caps.temperature.min, caps.temperature.max
        if sampling.temperature is not None and not low <= sampling.temperature <= high:
            raise Forbidden(f"temperature {sampling.temperature} is outside your allowed range "
                            f"[{low}, {high}]", param="temperature")
        if sampling.temperature is None and defaults.temperature is not None:
            update["temperature"] = min(max(defaults.temperature, low), high)
    return sampling.model_copy(update=update) if update else sampling


def explain(authorizer: Authorizer, *, subject: str, groups: frozenset[str],
            idp_roles: frozenset[str], api_key_role: str | None, action: Action,
            model_names: tuple[str, ...]) -> dict[str, object]:
    """Why an identity may or may not do ``action``: the roles it holds and the deciding rule."""
    policy = authorizer.source.policy
    roles = policy.roles_of(subject=subject, groups=groups, idp_roles=idp_roles,
                            api_key_role=api_key_role)
    names = model_names if action in MODEL_ACTIONS else ()
    decision = authorizer.decide(roles, action, names)
    return {
        "allowed": decision.allowed, "action": action, "model": decision.model,
        "roles": sorted(roles), "reason": decision.reason,
        "rule": None if decision.rule is None else decision.rule + 1,
        "location": decision.location, "policy_version": authorizer.source.version,
        "caps": decision.caps.model_dump(exclude_none=True) if decision.allowed else None,
    }
