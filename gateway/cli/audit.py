"""`vagt audit`: search, read, follow, export, verify and prune the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.audit.chain import Signer
from gateway.audit.export import Format, exported, matching
from gateway.audit.log import trusted_keys, witnesses
from gateway.audit.query import DECISIONS, Query, QueryError, parse_moment
from gateway.audit.record import Record, timestamp
from gateway.audit.sink import AuditSink
from gateway.cli.common import (
    CONTEXT,
    audit_log,
    audited,
    data_dir_option,
    database_url_option,
    fail,
    in_database,
    reported,
    settings_from,
)
from gateway.settings import Settings

T = TypeVar("T")


@click.group(context_settings=CONTEXT)
def audit() -> None:
    """Search, read, follow, export, verify and prune the audit log."""


def _filters(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed([
        click.option("--subject", help="Who: a user, a service, key:NAME."),
        click.option("--model", help="The model asked for (its canonical name)."),
        click.option("--decision", type=click.Choice(DECISIONS)),
        click.option("--action", help="chat, complete, embed, models:list, policy:write…"),
        click.option("--kind", type=click.Choice(["request", "admin"])),
        click.option("--since", help="From: 2026-11-26, 2026-11-26T09:30, or ago: 15m, 7d."),
        click.option("--until", help="Up to (not including), in the same forms."),
        data_dir_option, database_url_option,
    ]):
        command = option(command)
    return command


def _query(limit: int | None = None, order: str | None = None, **filters: Any) -> Query:
    with reported(QueryError):
        return Query.parse(limit=limit, order=order, **filters)


def _settings(options: dict[str, Any]) -> Settings:
    """Settings from the database flags, taken out of ``options`` (what is left: filters)."""
    return settings_from(data_dir=options.pop("data_dir", None),
                         database_url=options.pop("database_url", None))


def _in_sink(settings: Settings, work: Callable[[AuditSink], Awaitable[T]]) -> T:
    return in_database(settings, AuditSink.open, work)


def _line(record: Record) -> str:
    return (f"{record['time'][:23]}  {record.get('subject') or '-':<22.22} "
            f"{record.get('action') or '-':<14.14} {record.get('model') or '-':<18.18} "
            f"{record['decision']:<12} {record.get('status') or '-':>3}  {record['id']}")


HEADER = (f"{'TIME (UTC)':<23}  {'SUBJECT':<22} {'ACTION':<14} {'MODEL':<18} {'DECISION':<12} "
          f"{'ST':>3}  ID")


def _print(records: list[Record], as_json: bool) -> None:
    for record in records:
        click.echo(json.dumps(record, ensure_ascii=False) if as_json else _line(record))


@audit.command("search")
@_filters
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
def search(limit: int, as_json: bool, **options: Any) -> None:
    """Records matching every filter given, newest first."""
    settings = _settings(options)
    query = _query(limit=limit, **options)
    records = _in_sink(settings, lambda sink: sink.search(query))
    if not as_json:
        click.echo(HEADER)
    _print(records, as_json)
    if not as_json:
        click.echo(f"{len(records)} record(s)" + (" (more: raise --limit or narrow --since)"
                                                  if len(records) == limit else ""), err=True)


@audit.command("show")
@click.argument("record_id")
@data_dir_option
@database_url_option
def show(record_id: str, **options: Any) -> None:
    """One record, in full."""
    record = _in_sink(_settings(options), lambda sink: sink.get(record_id))
    if record is None:
        fail(f"no audit record has the id '{record_id}'")
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@audit.command("tail")
@click.option("-n", "--lines", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="How many of the latest records to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing records as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.option("--interval", type=float, default=0.5, show_default=True,
              help="Seconds between polls when following.")
@data_dir_option
@database_url_option
def tail(lines: int, follow: bool, as_json: bool, interval: float, **options: Any) -> None:
    """The latest records, oldest first; with -f, then every new one (Ctrl-C to stop)."""

    async def work(sink: AuditSink) -> None:
        positions = await sink.positions()
        latest = await sink.search(Query(limit=lines)) if lines else []
        if not as_json:
            click.echo(HEADER)
        _print(list(reversed(latest)), as_json)
        while follow:
            await asyncio.sleep(interval)
            _print(await sink.newer(positions), as_json)
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        _in_sink(_settings(options), work)


@audit.command("export")
@_filters
@click.option("--format", "form", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file (default: stdout).")
def export(form: Format, output: Path | None, **options: Any) -> None:
    """Every matching record, oldest first: JSON lines (each exactly as hashed) or CSV."""
    settings = _settings(options)
    query = _query(limit=500, order="asc", **options)

    async def work(sink: AuditSink) -> int:
        count = 0
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            async for text in exported(matching(sink, query), form):
                out.write(text)
                count += 1
        finally:
            if output:
                out.close()
        return count - (1 if form == "csv" else 0)  # the CSV header is not a record

    count = _in_sink(settings, work)
    click.echo(f"exported {count} record(s)" + (f" to {output}" if output else ""), err=True)


@audit.command("verify")
@click.option("--public-key", "public_keys", multiple=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Another replica's public key (PEM); this host's own key is always used.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@data_dir_option
@database_url_option
def verify(public_keys: tuple[Path, ...], as_json: bool, **options: Any) -> None:
    """Check every chain from its start (or last prune) to its end: exit 0 when intact, 1 with
    the first record where a chain breaks."""
    settings = _settings(options)
    with reported(ValueError, OSError):
        keys = trusted_keys(settings, public_keys)
    reports = in_database(settings, AuditSink.open,
                          lambda sink: sink.verify(keys, witnesses(settings)))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        for report in reports:
            click.echo(f"OK  {report.chain}: {report.records} record(s) (seq "
                       f"{report.first_seq or '-'}-{report.last_seq or '-'}), signed through seq "
                       f"{report.signed_seq or '-'}" if report.ok else
                       f"BROKEN  {report.chain} at seq {report.broken_at}: {report.problem}")
        if not reports:
            click.echo("OK  the audit log is empty")
    if not all(r.ok for r in reports):
        raise SystemExit(1)


@audit.command("prune")
@click.option("--before", required=True,
              help="Delete records older than this: 2026-01-01, or ago: 365d.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@data_dir_option
@database_url_option
def prune(before: str, yes: bool, data_dir: Path | None, database_url: str | None) -> None:
    """Delete old records, leaving a checkpoint signed with this host's key where each chain
    now begins, so the rest still verifies. The prune itself is audited."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    with reported(QueryError):
        moment = parse_moment(before, "before")
    if not yes:
        click.confirm(f"Delete every audit record before {timestamp(moment)}?", abort=True)

    removed = in_database(settings, audit_log(settings), lambda log: log.prune(moment))
    audited(settings, "audit:prune", None, {"before": timestamp(moment), "removed": removed})
    click.echo(f"pruned {sum(removed.values())} record(s)" + "".join(
        f"\n  {chain}: {count}" for chain, count in sorted(removed.items())))


@audit.command("public-key")
@data_dir_option
def public_key(data_dir: Path | None) -> None:
    """Print this host's audit signing key's public half (PEM), for auditors to verify with."""
    settings = settings_from(data_dir=data_dir)
    path = settings.audit_key
    if not path.exists():
        fail(f"no signing key at {path}: it is made when the gateway first starts")
    click.echo(Signer.open(path).public_pem(), nl=False)

