"""Records out: every record matching a query, page by page, as JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from gateway.audit.query import Query
from gateway.audit.record import CHAIN_FIELDS, FIELDS, Record
from gateway.audit.sink import AuditSink

Format = Literal["jsonl", "csv"]
COLUMNS = (*FIELDS, *CHAIN_FIELDS)


async def matching(sink: AuditSink, query: Query) -> AsyncIterator[Record]:
    """Every record matching ``query`` (its limit is the page size), in its order."""
    while True:
        page = await sink.search(query)
        for record in page:
            yield record
        if len(page) < query.limit:
            return
        query = query.next_page((page[-1]["time"], page[-1]["id"]))


async def exported(records: AsyncIterator[Record], form: Format) -> AsyncIterator[str]:
    """JSON lines (each the record as hashed, so an export can be checked offline), or CSV with
    one column per field (lists joined by ';', objects as JSON)."""
    if form == "jsonl":
        async for record in records:
            yield json.dumps(record, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False) + "\n"
        return
    yield _csv_line(COLUMNS)
    async for record in records:
        yield _csv_line([_cell(record.get(column)) for column in COLUMNS])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        text = ";".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    # A subject such as "=HYPERLINK(…)" must stay text when a spreadsheet opens the export.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(cells: Any) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()
