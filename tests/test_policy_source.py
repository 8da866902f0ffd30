"""Policy validation: every class of error, with file, line and column; the schema stays current."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gateway.cli.policy import schema_text
from gateway.policy_source import PolicyError, parse_policy
from tests.conftest import ROOT, run_vagt

VALID = """\
version: 1
roles:
  analysts:
    members:
      groups: [CN=Analysts]
rules:
  - roles: [analysts]
    allow: [chat]
    models: ["smollm2*"]
"""


def problems(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(textwrap.dedent(text), "policy.yaml")
    assert all(p.file == "policy.yaml" for p in caught.value.problems)
    return [(p.line, p.column, p.message) for p in caught.value.problems]


def test_a_valid_policy_parses_with_rule_lines() -> None:
    source = parse_policy(VALID, "policy.yaml")
    assert source.rule_lines == (7,)
    assert source.rule_location(0) == "policy.yaml:7"
    assert len(source.version) == 16
    assert parse_policy(VALID + "\n", "policy.yaml").version != source.version


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("version: 1\nroles: [unclosed\n", 3, 1, "not valid YAML"),
    ("version: 1\ncolour: red\n", 2, 1, "unknown key 'colour' in the policy"),
    ("version: 1\nroles:\n  a:\n    members:\n      grups: [x]\n", 5, 7,
     "unknown key 'grups' in roles.a.members"),
    ("roles: {}\n", 1, 1, "'version' is required in the policy"),
    ("version: 2\n", 1, 10, "version: Input should be 1"),
    ("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [a]\n    allow: [chat, dance]\n", 6, 19,
     "rules.0.allow.1: Input should be"),
    ("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [a]\n    allow: chat\n", 6, 12,
     "rules.0.allow: Input should be a valid tuple"),
    ("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [a]\n    allow: [chat]\n"
     "  - roles: [a, analysts]\n    deny: [chat]\n", 7, 16,
     "role 'analysts' in rule 2 is not defined"),
    ("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [a]\n    allow: [chat]\n"
     "    deny: [embed]\n", 5, 5, "a rule needs exactly one of allow or deny"),
    ("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [a]\n", 5, 5,
     "a rule needs exactly one of allow or deny"),
    ("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [a]\n    allow: [policy:read]\n"
     "    models: ['*']\n", 5, 5, "models only apply to the actions chat, complete and embed"),
    ("version: 1\nroles:\n  a: {}\n  a: {}\n", 4, 3, "duplicate key 'a'"),
    ("version: 1\nroles:\n  a:\n    caps:\n      temperature: {min: 1.5, max: 0.5}\n", 5, 20,
     "temperature min is above max"),
    ("version: 1\nroles:\n  a:\n    caps:\n      max_tokens: 0\n", 5, 19,
     "roles.a.caps.max_tokens: Input should be greater than or equal to 1"),
    ("version: 1\nidentity:\n  oidc:\n    - issuer: https://idp\n      audience: v\n"
     "      algorithms: [HS256]\n", 6, 20, "identity.oidc.0.algorithms.0: Input should be"),
    ("version: 1\nidentity:\n  oidc:\n    - issuer: https://idp\n      audience: v\n"
     "      algorithms: [none]\n", 6, 20, "identity.oidc.0.algorithms.0: Input should be"),
    ("version: 1\nidentity:\n  oidc:\n    - issuer: http://idp.example.com\n"
     "      audience: v\n", 4, 15, "an issuer must be an https:// URL"),
    ("version: 1\nidentity:\n  ldap:\n    url: ldap://dc\n    bind_dn: x\n    user_base: y\n"
     "    user_filter: (uid=alice)\n", 7, 18, "user_filter must contain {username}"),
    ("", 1, 1, "the policy is empty"),
])
def test_every_error_class_has_a_position(text: str, line: int, column: int,
                                          message: str) -> None:
    found = problems(text)
    assert any((row, col) == (line, column) and message in m for row, col, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems("version: 1\ncolour: red\nroles:\n  a: {}\nrules:\n"
                     "  - roles: [b]\n    allow: [chat]\n  - roles: [c]\n    allow: [fly]\n")
    messages = " | ".join(m for _, _, m in found)
    assert "unknown key 'colour'" in messages
    assert "rules.1.allow.0" in messages
    assert len(found) >= 2


def test_cli_check_prints_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroles:\n  a: {}\nrules:\n  - roles: [analysts]\n"
                   "    allow: [chat]\n")
    result = run_vagt("policy", "check", str(bad))
    assert result.returncode == 1
    assert f"{bad}:5:13: role 'analysts' in rule 1 is not defined" in result.stderr
    good = run_vagt("policy", "check", str(ROOT / "policies" / "default.yaml"),
                    str(ROOT / "policies" / "examples" / "departments.yaml"))
    assert good.returncode == 0, good.stderr
    assert good.stdout.count(": valid (version ") == 2


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "policies" / "schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), "run `vagt policy schema` and commit policies/schema.json"
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False  # unknown keys are errors in editors too
    assert "rules" in schema["properties"]
