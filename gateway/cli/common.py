"""What every command shares: the group, settings from flags, failing with a clear message."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gateway.audit.log import AuditLog
from gateway.audit.record import admin_record
from gateway.policy import AuditPolicy
from gateway.settings import Settings
from gateway.store import Database, open_database

Store = TypeVar("Store")
T = TypeVar("T")

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

data_dir_option = click.option("--data-dir", type=click.Path(path_type=Path),
                               help="The data directory (catalogue, models, vagt.db).")
database_url_option = click.option(
    "--database-url", help="sqlite:///PATH or postgresql://… (default: DATA_DIR/vagt.db).")


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def fail(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="vagt")
def main() -> None:
    """Vagt: a security gateway that serves local language models."""


def in_database(settings: Settings, store: Callable[[Database], Awaitable[Store]],
                work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the gateway's database, open ``store`` on it, do ``work``, close."""
    async def run() -> T:
        db = await open_database(settings.store_url)
        try:
            return await work(await store(db))
        finally:
            await db.close()
    return asyncio.run(run())


def audit_log(settings: Settings) -> Callable[[Database], Awaitable[AuditLog]]:
    """Opens this host's audit chain for one-shot writes (no spool: the CLI writes at once)."""
    async def open_log(db: Database) -> AuditLog:
        return await AuditLog.open(db, settings, AuditPolicy, spooled=False)
    return open_log


def audited(settings: Settings, action: str, target: str | None,
            detail: dict[str, Any] | None = None) -> None:
    """Record an admin action done from this host's CLI in the audit log (on this host's
    chain; the OS user is the subject)."""
    record = admin_record(subject=getpass.getuser(), action=action, target=target,
                          detail=detail)
    try:
        in_database(settings, audit_log(settings), lambda log: log.write([record]))
    except Exception as exc:  # the action is done; say so, and that it went unrecorded
        fail(f"{action} {target or ''} was done, but its audit record could not be written: "
             f"{exc}")


@contextmanager
def reported(*errors: type[Exception]) -> Iterator[None]:
    """Turn ``errors`` into a clear message on stderr and exit status 1."""
    try:
        yield
    except errors as exc:
        fail(str(exc))
