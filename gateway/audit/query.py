"""The filters people search the audit log with, shared by the CLI, the API and the web page."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from gateway.audit.record import timestamp
from gateway.durations import parse_duration

DECISIONS = ("allowed", "denied", "rate_limited", "failed")
MAX_LIMIT = 1000


class QueryError(ValueError):
    """A filter that cannot be understood; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Query:
    subject: str | None = None
    model: str | None = None
    decision: str | None = None
    action: str | None = None
    kind: str | None = None
    since: str | None = None  # a timestamp() string, inclusive
    until: str | None = None  # exclusive
    limit: int = 50
    order: Literal["asc", "desc"] = "desc"
    after: tuple[str, str] | None = None  # (time, id) of the last record of the previous page

    @classmethod
    def parse(cls, *, subject: str | None = None, model: str | None = None,
              decision: str | None = None, action: str | None = None, kind: str | None = None,
              since: str | None = None, until: str | None = None, limit: int | str | None = None,
              order: str | None = None, cursor: str | None = None) -> Query:
        """From the words people type; QueryError names the filter that is wrong."""
        if decision is not None and decision not in DECISIONS:
            raise QueryError(f"decision must be one of {', '.join(DECISIONS)}")
        if kind is not None and kind not in ("request", "admin"):
            raise QueryError("kind must be request or admin")
        if order is not None and order not in ("asc", "desc"):
            raise QueryError("order must be asc or desc")
        try:
            count = 50 if limit is None else int(limit)
        except ValueError:
            raise QueryError("limit must be a whole number") from None
        if not 1 <= count <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        return cls(subject=subject or None, model=model or None, decision=decision or None,
                   action=action or None, kind=kind or None,
                   since=None if not since else parse_time(since, "since"),
                   until=None if not until else parse_time(until, "until"), limit=count,
                   order="asc" if order == "asc" else "desc",
                   after=None if not cursor else _decode_cursor(cursor))

    def next_page(self, last: tuple[str, str]) -> Query:
        return replace(self, after=last)


def parse_moment(text: str, name: str = "time") -> float:
    """Unix seconds from an ISO 8601 date or time (UTC unless it says otherwise), or from a
    duration ago ("15m", "7d")."""
    text = text.strip()
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name}: {text!r} is neither a date/time (2026-11-26, "
                         "2026-11-26T09:30) nor a duration ago (15m, 7d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_time(text: str, name: str = "time") -> str:
    """``parse_moment`` as a timestamp() string, the form records are searched by."""
    return timestamp(parse_moment(text, name))


def encode_cursor(last: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(f"{last[0]}|{last[1]}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        moment, _, record_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    except (ValueError, UnicodeDecodeError):
        raise QueryError("cursor is not one this gateway gave out") from None
    if not moment or not record_id:
        raise QueryError("cursor is not one this gateway gave out")
    return moment, record_id
