"""Reading the audit trail: the filters the audit page, its CSV export and the API share, and how events are
written out. Recording events is ``studio.audit``'s job."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.utils import timezone

from .audit import ACTIONS
from .errors import InvalidInput
from .models import AuditEvent

FILTERS = ("actor", "action", "project", "since", "until")
DATE_HELP = "Enter a date as YYYY-MM-DD, or a date and time with its offset (2026-03-07T09:05:00Z)."
CSV_COLUMNS = ["time", "actor", "action", "target", "project", "ip", "details"]


@dataclass(frozen=True)
class AuditFilters:
    """Validated filters. ``raw`` keeps what was asked, to fill the form and build links."""

    raw: dict[str, str]
    actor: str = ""
    action: str = ""
    project: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def querystring(self, **extra: str) -> str:
        params = {k: v for k, v in self.raw.items() if v} | {k: v for k, v in extra.items() if v}
        return urlencode(params)


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# RFC 3339: a date and time with its offset (``2026-03-07T09:05:00Z``, ``…+01:00``).
_MOMENT = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_moment(value: str, *, end: bool) -> datetime | None:
    """A day (``YYYY-MM-DD``) means a whole day in the studio's time zone: ``since`` from its start,
    ``until`` through its end. A date and time (RFC 3339, with its offset) is taken as given. Both bounds
    come back as instants in UTC: ``since`` inclusive, ``until`` exclusive. None when the value is neither."""
    # In a query string an unencoded "+" of a UTC offset arrives as a space.
    value = value.strip()
    if "T" in value or "t" in value:
        value = value.replace(" ", "+")
    try:
        if _DAY.match(value):
            start = timezone.make_aware(datetime.combine(date.fromisoformat(value), time.min))
            moment = start + timedelta(days=1) if end else start
        elif match := _MOMENT.match(value):
            day, minutes, seconds, fraction, offset = match.groups()
            seconds = min(int(seconds), 59)  # a leap second is the last second of its minute here
            fraction = (fraction or ".0")[1:7].ljust(6, "0")
            offset = "+00:00" if offset in ("Z", "z") else offset
            moment = datetime.fromisoformat(f"{day}T{minutes}:{seconds:02d}.{fraction}{offset}")
            if end:
                moment += timedelta(microseconds=1)
        else:
            return None
        # In UTC: the database takes offsets of at most 15:59, RFC 3339 up to 23:59.
        return moment.astimezone(UTC)
    except ValueError:  # well formed but impossible, such as 2026-02-30
        return None
    except OverflowError:  # at the very edge of the calendar: every event is on one side of it
        return datetime.max.replace(tzinfo=UTC) if value >= "5000" else datetime.min.replace(tzinfo=UTC)


def check_audit_filters(params: Mapping[str, Any]) -> AuditFilters:
    """Validate the audit filters of a query string; InvalidInput lists every bad one."""
    raw = {name: str(params.get(name) or "").strip() for name in FILTERS}
    errors: dict[str, list[str]] = {}
    if len(raw["actor"]) > 150:
        errors["actor"] = ["At most 150 characters."]
    if raw["action"] and raw["action"] not in ACTIONS:
        errors["action"] = [f"Unknown action. Choose one of: {', '.join(ACTIONS)}."]
    if len(raw["project"]) > 60:
        errors["project"] = ["At most 60 characters."]
    since = until = None
    if raw["since"]:
        since = parse_moment(raw["since"], end=False)
        if since is None:
            errors["since"] = [DATE_HELP]
    if raw["until"]:
        until = parse_moment(raw["until"], end=True)
        if until is None:
            errors["until"] = [DATE_HELP]
    if since and until and until <= since:
        errors["until"] = ["Must be after “since”."]
    if errors:
        raise InvalidInput("Some filters are invalid: " + ", ".join(sorted(errors)) + ".", errors)
    return AuditFilters(
        raw=raw, actor=raw["actor"], action=raw["action"], project=raw["project"], since=since, until=until
    )


def audit_events(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The matching events, newest first. Actor and project match the names recorded with each event, so
    events of a deleted user or project are still found."""
    queryset = AuditEvent.objects.order_by("-time", "-id")
    if filters.actor:
        queryset = queryset.filter(actor_name__iexact=filters.actor)
    if filters.action:
        queryset = queryset.filter(action=filters.action)
    if filters.project:
        queryset = queryset.filter(project_slug=filters.project)
    if filters.since:
        queryset = queryset.filter(time__gte=filters.since)
    if filters.until:
        queryset = queryset.filter(time__lt=filters.until)
    return queryset


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "time": event.time.isoformat(),
        "actor": event.actor_name or None,
        "action": event.action,
        "target": event.target,
        "project": event.project_slug or None,
        "ip": event.ip,
        "details": event.details,
    }


def _cell(value: str) -> str:
    # A spreadsheet runs a cell that starts like a formula. Usernames may start with + - @, and the name tried
    # in a failed sign-in is anyone's text: keep such cells text (OWASP's advice for CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class _Echo:
    """A file-like object whose ``write`` returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(queryset: QuerySet[AuditEvent]) -> Iterator[str]:
    """The events as CSV lines, header first, read from the database in chunks while they are sent."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in queryset.iterator(chunk_size=1000):
        yield writer.writerow(
            [
                event.time.isoformat(),
                _cell(event.actor_name),
                event.action,
                _cell(event.target),
                _cell(event.project_slug),
                event.ip or "",
                json.dumps(event.details, sort_keys=True, ensure_ascii=False),
            ]
        )
