"""`vagt keys`: API keys for service accounts."""

from __future__ import annotations

import time
from pathlib import Path

import click

from gateway.auth.apikeys import create_key
from gateway.auth.keystore import KeyExists, KeyStore
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
from gateway.durations import parse_lifetime


@click.group(context_settings=CONTEXT)
def keys() -> None:
    """Create, list and revoke API keys for service accounts."""


@keys.command("create")
@click.option("--name", required=True, help="A unique name for the key (e.g. the service).")
@click.option("--role", required=True, help="The role the key holds (mapped by the policy).")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h, 30m (default: never).")
@data_dir_option
@database_url_option
def keys_create(name: str, role: str, expires: str | None, data_dir: Path | None,
                database_url: str | None) -> None:
    """Create a key and print its secret once, on stdout."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    with reported(ValueError):
        lifetime = None if expires is None else parse_lifetime(expires)
    expires_at = None if lifetime is None else time.time() + lifetime
    try:
        created = in_database(settings, KeyStore.open,
                              lambda s: create_key(s, name, role, expires_at))
    except KeyExists:
        fail(f"a key named '{name}' already exists")
    audited(settings, "keys:create", name, {"role": role, "expires_at": None if expires_at is None
                                            else int(expires_at)})
    click.echo(created.secret)
    click.echo(f"created key '{name}' with role '{role}'"
               + ("" if expires_at is None else f", expiring {_when(expires_at)}")
               + ". The secret above is shown only now.", err=True)


@keys.command("list")
@data_dir_option
@database_url_option
def keys_list(data_dir: Path | None, database_url: str | None) -> None:
    """Keys with their role, state, expiry and last use (never their secrets)."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    records = in_database(settings, KeyStore.open, lambda s: s.all())
    now = time.time()
    click.echo(f"{'NAME':<24} {'ROLE':<12} {'PREFIX':<14} {'STATE':<8} {'EXPIRES':<17} LAST USED")
    for r in records:
        state = ("revoked" if r.revoked_at is not None
                 else "expired" if not r.usable(now) else "active")
        click.echo(f"{r.name:<24} {r.role:<12} {r.prefix + '…':<14} {state:<8} "
                   f"{_when(r.expires_at):<17} {_when(r.last_used_at)}")


@keys.command("revoke")
@click.argument("name")
@data_dir_option
@database_url_option
def keys_revoke(name: str, data_dir: Path | None, database_url: str | None) -> None:
    """Revoke a key; the gateway refuses it within the policy's api_keys.cache_ttl."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    if not in_database(settings, KeyStore.open, lambda s: s.revoke(name)):
        fail(f"no active key named '{name}'")
    audited(settings, "keys:revoke", name)
    click.echo(f"revoked key '{name}'")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
