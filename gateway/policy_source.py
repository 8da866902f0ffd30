"""Policy text → a validated Policy, or every problem with file, line and column.

PyYAML's node tree keeps where each value was written; validation errors (pydantic's, and the
policy's own cross-reference checks) are mapped back onto it. Duplicate keys, which YAML would
silently resolve to the last one, are errors too: a typo must never open the gate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

from gateway.policy import Policy


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PolicyError(Exception):
    """The policy is invalid; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PolicySource:
    """A validated policy with its text, where it came from and its version (content hash)."""

    policy: Policy
    text: str
    origin: str
    rule_lines: tuple[int, ...]
    version: str  # the first 16 hex digits of the text's SHA-256

    def rule_location(self, index: int) -> str:
        return f"{self.origin}:{self.rule_lines[index]}"


def load_policy(path: Path) -> PolicySource:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([Problem(str(path), 1, 1, f"cannot read: {exc.strerror}")]) from None
    return parse_policy(text, str(path))


def parse_policy(text: str, origin: str) -> PolicySource:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError([Problem(origin, line, column,
                                   f"not valid YAML: {exc.problem or exc}")]) from None
    if root is None:
        raise PolicyError([Problem(origin, 1, 1, "the policy is empty")])
    problems = [Problem(origin, *position, message) for position, message in _duplicates(root)]
    data = yaml.safe_load(text)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            # An unknown key points at the key; anything else at the offending value.
            node = _node_at(root, error["loc"], at_key=error["type"] == "extra_forbidden")
            problems.append(Problem(origin, node.start_mark.line + 1,
                                    node.start_mark.column + 1, _message(error)))
        raise PolicyError(problems) from None
    for path, message in policy.problems():
        node = _node_at(root, path, at_key=False)
        problems.append(Problem(origin, node.start_mark.line + 1, node.start_mark.column + 1,
                                message))
    if problems:
        raise PolicyError(sorted(problems, key=lambda p: (p.line, p.column)))
    rules = _node_at(root, ("rules",), at_key=False)
    lines = tuple(n.start_mark.line + 1 for n in rules.value) if isinstance(
        rules, SequenceNode) else ()
    return PolicySource(policy=policy, text=text, origin=origin, rule_lines=lines,
                        version=hashlib.sha256(text.encode()).hexdigest()[:16])


def _node_at(root: Node, path: tuple[Any, ...], *, at_key: bool = True) -> Node:
    """The deepest node along ``path``; a path ending at a mapping key gives the key itself
    (where an error about it points), unless ``at_key`` is false."""
    node = root
    for depth, part in enumerate(path):
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node = key if at_key and depth == len(path) - 1 else value
                    break
            else:
                return node
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _duplicates(node: Node) -> list[tuple[tuple[int, int], str]]:
    found: list[tuple[tuple[int, int], str]] = []
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                found.append(((key.start_mark.line + 1, key.start_mark.column + 1),
                              f"duplicate key '{key.value}' (YAML would keep only the last)"))
            seen.add(key.value)
            found.extend(_duplicates(value))
    elif isinstance(node, SequenceNode):
        for item in node.value:
            found.extend(_duplicates(item))
    return found


def _message(error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    parent = ".".join(loc[:-1]) or "the policy"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{loc[-1]}' in {parent}"
    if error["type"] == "missing":
        return f"'{loc[-1]}' is required in {parent}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc)}: {message}" if loc else message
