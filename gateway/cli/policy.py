"""`vagt policy`: check, schema, explain, versions, diff and rollback."""

from __future__ import annotations

import asyncio
import difflib
import getpass
import json
import time
from pathlib import Path
from typing import get_args

import click

from gateway.cli.common import (
    CONTEXT,
    audited,
    data_dir_option,
    database_url_option,
    fail,
    in_database,
    reported,
    settings_from,
)
from gateway.policy import Action, Policy
from gateway.policy_source import PolicyError, load_policy, parse_policy
from gateway.policy_store import PolicyHistory, write_atomically
from gateway.rbac import Authorizer, explain
from inference.registry import Catalogue

SCHEMA_PATH = Path("policies/schema.json")
policy_option = click.option("--policy", "policy_path", type=click.Path(path_type=Path),
                             help="The policy file (default: policies/default.yaml).")


def schema_text() -> str:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Vagt policy"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


@click.group(context_settings=CONTEXT)
def policy() -> None:
    """Check, explain and manage versions of the policy."""


@policy.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(files: tuple[Path, ...]) -> None:
    """Validate policy files; print every problem with file, line and column."""
    failed = False
    for file in files:
        try:
            source = load_policy(file)
        except PolicyError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            continue
        click.echo(f"{file}: valid (version {source.version}, {len(source.policy.roles)} roles, "
                   f"{len(source.policy.rules)} rules)")
    if failed:
        raise SystemExit(1)


@policy.command("schema")
@click.option("--output", type=click.Path(path_type=Path), default=SCHEMA_PATH,
              show_default=True, help="Where to write the JSON Schema ('-' for stdout).")
def schema(output: Path) -> None:
    """Write the policy's JSON Schema, for editors to validate and autocomplete."""
    if str(output) == "-":
        click.echo(schema_text(), nl=False)
        return
    output.write_text(schema_text(), encoding="utf-8")
    click.echo(f"wrote {output}")


@policy.command("explain")
@policy_option
@click.option("--subject", required=True, help="The user or service (key:NAME for API keys).")
@click.option("--group", "groups", multiple=True, help="A directory group DN or token group.")
@click.option("--idp-role", "idp_roles", multiple=True, help="A role from the token.")
@click.option("--key-role", help="The role an API key was created with.")
@click.option("--action", required=True, type=click.Choice(get_args(Action)))
@click.option("--model", help="The model (for chat, complete, embed).")
@data_dir_option
def explain_command(policy_path: Path | None, subject: str, groups: tuple[str, ...],
                    idp_roles: tuple[str, ...], key_role: str | None, action: Action,
                    model: str | None, data_dir: Path | None) -> None:
    """Whether an identity may do something, and the rule (file:line) that decides it."""
    settings = settings_from(policy=policy_path, data_dir=data_dir)
    with reported(PolicyError):
        source = load_policy(settings.policy)
    names: tuple[str, ...] = ()
    if model is not None:
        spec = Catalogue.load(settings.catalogue_path).find(model)
        names = spec.names if spec is not None else (model,)
    result = explain(Authorizer(source), subject=subject, groups=frozenset(groups),
                     idp_roles=frozenset(idp_roles), api_key_role=key_role, action=action,
                     model_names=names)
    verdict = "ALLOWED" if result["allowed"] else "DENIED"
    click.echo(f"{verdict}: {result['reason']}")
    click.echo(f"  roles held: {', '.join(result['roles']) or '(none)'}")  # type: ignore[arg-type]
    click.echo(f"  decided by: {result['location'] or 'deny by default (no rule matched)'}")
    if result["caps"]:
        click.echo(f"  caps: {json.dumps(result['caps'])}")


@policy.command("versions")
@data_dir_option
@database_url_option
def versions(data_dir: Path | None, database_url: str | None) -> None:
    """Every policy version that was in force: when, and who put it there."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    changes = in_database(settings, PolicyHistory.open, lambda h: h.changes())
    for change in changes:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(change.changed_at))
        click.echo(f"{change.version}  {when}  {change.author:<24} {change.origin}")


@policy.command("diff")
@click.argument("old")
@click.argument("new")
@data_dir_option
@database_url_option
def diff(old: str, new: str, data_dir: Path | None, database_url: str | None) -> None:
    """Show what changed between two recorded versions (ids or unique prefixes)."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)

    async def texts(history: PolicyHistory) -> tuple[str, str]:
        return await history.content(old), await history.content(new)

    try:
        before, after = in_database(settings, PolicyHistory.open, texts)
    except KeyError as exc:
        fail(str(exc.args[0]))
    click.echo("".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"policy@{old}", tofile=f"policy@{new}")), nl=False)


@policy.command("rollback")
@click.argument("version")
@policy_option
@data_dir_option
@database_url_option
def rollback(version: str, policy_path: Path | None, data_dir: Path | None,
             database_url: str | None) -> None:
    """Put a recorded version back in force: rewrite the policy file (a running gateway reloads
    it) and record who did it."""
    settings = settings_from(policy=policy_path, data_dir=data_dir, database_url=database_url)

    async def restore(history: PolicyHistory) -> str:
        text = await history.content(version)
        source = parse_policy(text, str(settings.policy))  # still valid under this build?
        await asyncio.to_thread(write_atomically, settings.policy, text)
        await history.record(source, f"rollback by {getpass.getuser()}")
        return source.version

    try:
        restored = in_database(settings, PolicyHistory.open, restore)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except PolicyError as exc:
        fail(f"version {version} is no longer valid:\n{exc}")
    audited(settings, "policy:rollback", restored, {"file": str(settings.policy)})
    click.echo(f"{settings.policy} now holds version {restored}")
