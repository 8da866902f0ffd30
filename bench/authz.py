"""Authorization cost per request for a policy of 50 roles and 200 rules (target ≤ 20 µs median).

Measures `Authorizer.authorize` for a caller holding 3 roles, on model names that match, miss and
hit a deny — first with decisions memoised per policy version (the steady state: the same callers
and models repeat), then with the memo cleared before every call (every decision computed from
the compiled rule table). The peer is the naive evaluation an implementation without a compiled
table would do: every rule, fnmatch on every pattern.

Usage: python bench/authz.py [--rounds N]
"""

from __future__ import annotations

import argparse
import fnmatch
import time
from collections.abc import Callable

import yaml
from micro import report, summary

from gateway.policy import Policy
from gateway.policy_source import PolicySource, parse_policy
from gateway.rbac import Authorizer

ACTIONS = ["chat", "complete", "embed", "models:list"]


def big_policy() -> PolicySource:
    roles = {f"team-{i}": {"members": {"groups": [f"CN=Team {i},OU=Groups,DC=corp,DC=example"]},
                           "caps": {"max_tokens": 512 + i}} for i in range(50)}
    rules = []
    for i in range(200):
        team = [f"team-{i % 50}", f"team-{(i * 7) % 50}"]
        if i % 10 == 9:
            rules.append({"roles": team, "deny": ["chat"], "models": [f"secret-{i}-*"]})
        else:
            rules.append({"roles": team, "allow": ACTIONS[: 1 + i % 4],
                          "models": [f"family-{i % 20}-*", f"model-{i}:*"]})
    text = yaml.safe_dump({"version": 1, "roles": roles, "rules": rules}, sort_keys=False)
    return parse_policy(text, "bench-policy.yaml")


def naive(policy: Policy, roles: frozenset[str], action: str, model: str) -> bool:
    allowed = False
    for rule in policy.rules:
        if roles.isdisjoint(rule.roles) or action not in rule.actions:
            continue
        if rule.models is None or any(fnmatch.fnmatchcase(model, p) for p in rule.models):
            if rule.deny:
                return False
            allowed = True
    return allowed


def timed(call: Callable[[], object], rounds: int) -> dict[str, float]:
    for _ in range(1000):
        call()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    source = big_policy()
    authorizer = Authorizer(source)
    roles = frozenset({"team-3", "team-21", "team-40"})
    cases = {"allowed": ("family-3-base:7b",), "no rule matches": ("unknown-model",),
             "denied": ("secret-9-x",)}
    results: dict[str, dict[str, float]] = {}
    for name, names in cases.items():
        def memoised(n: tuple[str, ...] = names) -> object:
            return authorizer.decide(roles, "chat", n)

        def computed(n: tuple[str, ...] = names) -> object:
            authorizer._memo.clear()
            return authorizer.decide(roles, "chat", n)

        def peer(n: tuple[str, ...] = names) -> object:
            return naive(source.policy, roles, "chat", n[0])

        results[f"{name}: memoised"] = timed(memoised, args.rounds)
        results[f"{name}: computed"] = timed(computed, args.rounds)
        results[f"{name}: naive peer"] = timed(peer, args.rounds)
    report("authz", "case, 50 roles, 200 rules", results)


if __name__ == "__main__":
    main()
