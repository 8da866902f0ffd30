"""The redact stage: what each caller's requests and responses may carry, by entity type.

A ``Redactor`` is built once per policy version: the recognizers, each entity's threshold, and
per set of roles a ``Plan`` (the mode of every entity type, for requests and for responses).
A request gets a ``Session``: it numbers the values it replaces (``<EMAIL_1>``, the same value
the same number, so the model can still refer to them), keeps the pseudonyms it must restore in
the response, and counts what it found — types and counts, never values.

Modes: ``mask`` (``<EMAIL_1>``), ``hash`` (``<EMAIL_3f9a0c21d4>``: keyed HMAC-SHA256, the same
value the same token for this gateway's key), ``pseudonymize`` (the model sees ``<EMAIL_1>``,
the caller gets the original back in the response), ``block`` (403 naming the types), ``off``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

from gateway.errors import Forbidden
from gateway.policy import MODES, Mode, RedactionModes, RedactionPolicy
from gateway.redaction.recognizers import ENTITIES, Finding, Scan, recognizers, resolve
from gateway.telemetry import PII_FINDINGS
from inference.types import ChatRequest, CompletionRequest, EmbedRequest

DEFAULT_THRESHOLD = 0.5
Redactable = TypeVar("Redactable", bound=ChatRequest | CompletionRequest | EmbedRequest)
Direction = str  # "request" | "response"


class Blocked(Forbidden):
    code = "pii_blocked"

    def __init__(self, types: Iterable[str], where: str) -> None:
        names = ", ".join(sorted(set(types)))
        super().__init__(f"the {where} contains {names}, which the policy does not allow")
        self.types = tuple(sorted(set(types)))


@dataclass(frozen=True, slots=True)
class Plan:
    request: Mapping[str, Mode]
    response: Mapping[str, Mode]

    def acting(self, direction: str) -> frozenset[str]:
        """The entity types this plan does something about in ``direction``."""
        modes = self.request if direction == "request" else self.response
        return frozenset(entity for entity, mode in modes.items() if mode != "off")


class Redactor:
    def __init__(self, policy: RedactionPolicy, hash_key: bytes) -> None:
        self.policy = policy
        self._hash_key = hash_key
        ner = policy.ner
        self._recognizers = recognizers(policy.phone_regions,
                                        (ner.model, ner.score) if ner is not None else None)
        fallback = policy.thresholds.get("*", DEFAULT_THRESHOLD)
        self.thresholds = {entity: policy.thresholds.get(entity, fallback)  # type: ignore[call-overload]
                           for entity in ENTITIES}
        self._plans: dict[frozenset[str], Plan] = {}

    def scan(self, text: str, only: frozenset[str] | None = None) -> list[Finding]:
        """Every entity in ``text`` (of the types ``only`` names, if given) at or above its
        threshold, overlaps resolved, in order."""
        scan, thresholds = Scan(text), self.thresholds
        found = []
        for recognizer in self._recognizers:  # the most specific first: they claim their spans
            if only is not None and not recognizer.types & only:
                continue
            for finding in recognizer.find(scan):
                if finding.score >= thresholds[finding.type]:
                    found.append(finding)
                    scan.claimed.append((finding.start, finding.end))
        return resolve(found)

    def masked(self, text: str) -> str:
        """``text`` with every entity replaced by its type (``<EMAIL>``): for the audit log,
        whatever any caller's modes are."""
        parts: list[str] = []
        last = 0
        for finding in self.scan(text):
            parts += (text[last:finding.start], f"<{finding.type}>")
            last = finding.end
        parts.append(text[last:])
        return "".join(parts)

    def plan(self, roles: frozenset[str]) -> Plan:
        plan = self._plans.get(roles)
        if plan is None:
            entries = [self.policy.roles[r] for r in sorted(roles) if r in self.policy.roles]
            plan = self._plans[roles] = Plan(
                {e: _mode(e, "request", entries, self.policy.default) for e in ENTITIES},
                {e: _mode(e, "response", entries, self.policy.default) for e in ENTITIES})
        return plan

    def session(self, roles: frozenset[str]) -> Session:
        return Session(self, self.plan(roles))

    def token(self, entity: str, value: str) -> str:
        digest = hmac.new(self._hash_key, f"{entity}:{value}".encode(), hashlib.sha256)
        return f"<{entity}_{digest.hexdigest()[:10]}>"


def _mode(entity: str, direction: str, entries: list[RedactionModes],
          default: RedactionModes) -> Mode:
    """The role entries' most permissive setting for ``entity`` (their own, else their "*"),
    else the default's, else off."""
    def setting(modes: RedactionModes) -> Mode | None:
        table: Mapping[str, Mode] = getattr(modes, direction)
        return table.get(entity, table.get("*"))

    granted = [mode for mode in map(setting, entries) if mode is not None]
    if granted:
        return min(granted, key=MODES.index)
    return setting(default) or "off"


class Session:
    """One request's redaction: numbering, pseudonyms to restore, counts."""

    def __init__(self, redactor: Redactor, plan: Plan) -> None:
        self.redactor = redactor
        self.plan = plan
        self.counts: dict[str, Counter[str]] = {"request": Counter(), "response": Counter()}
        self.pseudonyms: dict[str, str] = {}  # token → original
        self._numbers: dict[tuple[str, str], int] = {}
        self._next: Counter[str] = Counter()

    def findings(self) -> dict[str, dict[str, int]]:
        """What was found, by direction and type (for the audit record)."""
        return {direction: dict(sorted(counts.items()))
                for direction, counts in self.counts.items() if counts}

    def apply(self, text: str, found: list[Finding], direction: str, blocked: list[str],
              between: Callable[[str], str] = str) -> str:
        """``text`` with ``found`` replaced as the plan says for ``direction``, and ``between``
        applied to the text between them; blocked types are added to ``blocked`` (the caller
        raises, once every text is seen)."""
        modes = self.plan.request if direction == "request" else self.plan.response
        counts = self.counts[direction]
        parts: list[str] = []
        last = 0
        for finding in found:
            counts[finding.type] += 1
            PII_FINDINGS.labels(finding.type, direction).inc()
            mode = modes[finding.type]
            if mode == "off":
                continue
            if mode == "block":
                blocked.append(finding.type)
                continue
            parts += (between(text[last:finding.start]),
                      self._replacement(finding.type, text[finding.start:finding.end], mode))
            last = finding.end
        parts.append(between(text[last:]))
        return "".join(parts)

    def _replacement(self, entity: str, value: str, mode: Mode) -> str:
        if mode == "hash":
            return self.redactor.token(entity, value)
        number = self._numbers.get((entity, value))
        if number is None:
            self._next[entity] += 1
            number = self._numbers[(entity, value)] = self._next[entity]
        token = f"<{entity}_{number}>"
        if mode == "pseudonymize":
            self.pseudonyms[token] = value
        return token


    def request(self, request: Redactable) -> Redactable:
        """The request as the model may see it: every text it carries (all messages, the
        prompt and suffix, embedding inputs) redacted. Raises Blocked naming the types."""
        if not self.plan.acting("request"):
            return request
        blocked: list[str] = []

        def clean(text: str) -> str:
            return self.apply(text, self.redactor.scan(text), "request", blocked)

        update: dict[str, object]
        if isinstance(request, ChatRequest):
            update = {"messages": tuple(m.model_copy(update={"content": clean(m.content)})
                                        for m in request.messages)}
        elif isinstance(request, CompletionRequest):
            update = {"prompt": clean(request.prompt),
                      "suffix": None if request.suffix is None else clean(request.suffix)}
        else:
            update = {"inputs": tuple(clean(text) for text in request.inputs)}
        if blocked:
            raise Blocked(blocked, "request")
        return cast(Redactable, request.model_copy(update=update))  # the same type it came in


def dry_run(redactor: Redactor, text: str, roles: frozenset[str] = frozenset(),
            direction: str = "request") -> tuple[str, list[Finding], list[str]]:
    """What the policy would do to ``text`` for a caller holding ``roles``: the text as
    redacted, the findings (offsets into ``text``), and the types that would block it."""
    session = redactor.session(roles)
    found = redactor.scan(text)
    blocked: list[str] = []
    return session.apply(text, found, direction, blocked), found, sorted(set(blocked))
