"""`vagt redact`: what the policy's redaction does to a text, before it is deployed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.cli.common import CONTEXT, data_dir_option, fail, reported, settings_from
from gateway.policy_source import PolicyError, load_policy
from gateway.redaction.redactor import Redactor, dry_run


@click.command(context_settings=CONTEXT)
@click.option("--policy", "policy_path", type=click.Path(path_type=Path, dir_okay=False),
              help="The policy file (default: the gateway's, policies/default.yaml).")
@click.option("--role", "roles", multiple=True, help="A role the caller holds (repeatable).")
@click.option("--direction", type=click.Choice(["request", "response"]), default="request",
              show_default=True, help="Redact as a request (what the model sees) or a response.")
@click.option("--json", "as_json", is_flag=True,
              help='One object: {"text": …, "findings": [{"type", "start", "end", "score"}]}.')
@click.option("--jsonl", "as_jsonl", is_flag=True,
              help='Read JSON lines {"text": …} and write one such object per line.')
@data_dir_option
def redact(policy_path: Path | None, roles: tuple[str, ...], direction: str, as_json: bool,
           as_jsonl: bool, data_dir: Path | None) -> None:
    """Redact stdin as the policy would for a caller with these roles; print the result.
    Offsets are in characters of the input."""
    settings = settings_from(policy=policy_path, data_dir=data_dir)
    with reported(PolicyError):
        policy = load_policy(settings.policy).policy
    unknown = [role for role in roles if role not in policy.roles]
    if unknown:
        fail(f"no such role in {settings.policy}: {', '.join(unknown)}")
    redactor = Redactor(policy.redaction, settings.hash_key())
    held = frozenset(roles)

    def answer(text: str) -> dict[str, object]:
        redacted, found, _ = dry_run(redactor, text, held, direction)
        return {"text": redacted, "findings": [f.as_dict() for f in found]}

    if as_jsonl:
        for number, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError):
                fail(f'line {number}: expected a JSON object {{"text": "…"}}')
            click.echo(json.dumps(answer(text), ensure_ascii=False))
        return
    text = sys.stdin.read()
    redacted, found, blocked = dry_run(redactor, text, held, direction)
    if as_json:
        click.echo(json.dumps({"text": redacted, "findings": [f.as_dict() for f in found]},
                              ensure_ascii=False))
    else:
        click.echo(redacted, nl=False)
    if blocked:
        click.echo(f"the policy would refuse this {direction} (403): it contains "
                   f"{', '.join(blocked)}", err=True)
