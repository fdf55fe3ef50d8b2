"""What the studio was used for: images and GPU-seconds per user and per project over a month.

Read-only aggregates for the admin area, a fixed number of queries whatever the number of users, projects or
jobs. Images are the assets of succeeded jobs; GPU-seconds are summed over every finished job (a failed or
canceled job used its GPU time too). A job counts in the month it finished. Months are calendar months in UTC,
the same periods as monthly quotas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from .errors import InvalidInput

PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    """A calendar month [start, end) in UTC."""

    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def label(self) -> str:
        return f"{self.start:%B %Y}"

    @property
    def previous(self) -> str:
        if self.start.month == 1:
            return f"{self.start.year - 1:04d}-12"
        return f"{self.start.year:04d}-{self.start.month - 1:02d}"

    @property
    def next(self) -> str:
        return f"{self.end:%Y-%m}"


def _month(year: int, month: int) -> Period:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else datetime(year, month + 1, 1, tzinfo=UTC)
    return Period(start, end)


def current_month(now: datetime | None = None) -> Period:
    now = (now or timezone.now()).astimezone(UTC)
    return _month(now.year, now.month)


def month_period(value: str | None, now: datetime | None = None) -> Period:
    """The month named ``YYYY-MM``, or the current one when ``value`` is empty; InvalidInput otherwise."""
    if not value:
        return current_month(now)
    match = PERIOD_RE.match(value.strip())
    if match is None or not (1 <= int(match[1]) <= 9998 and 1 <= int(match[2]) <= 12):
        raise InvalidInput("The period is not a month.", {"period": ["Enter a month as YYYY-MM."]})
    return _month(int(match[1]), int(match[2]))


@dataclass
class UsageRow:
    """One user's or one project's use in a period."""

    key: Any
    label: str
    name: str = ""
    images: int = 0
    gpu_seconds: float = 0.0


def _aggregate(period: Period, group: dict[str, str]) -> list[UsageRow]:
    """Images and GPU-seconds grouped by the job fields in ``group`` (``{"key": ..., "label": ...,
    "name": ...}``): the two aggregate queries of ``settings.STUDIO_USAGE_COUNTS`` (the jobs' app's), merged
    here."""
    images, gpu = import_string(settings.STUDIO_USAGE_COUNTS)(period.start, period.end, group)
    rows: dict[Any, UsageRow] = {}
    for item in images:
        row = rows.setdefault(item["key"], UsageRow(item["key"], item["label"], item.get("name", "")))
        row.images = item["n"]
    for item in gpu:
        row = rows.setdefault(item["key"], UsageRow(item["key"], item["label"], item.get("name", "")))
        row.gpu_seconds = float(item["s"] or 0)
    return sorted(rows.values(), key=lambda r: (-r.gpu_seconds, -r.images, r.label))


def by_user(period: Period) -> list[UsageRow]:
    """Everyone who used something in the period, heaviest first. ``key`` is the user id, ``label`` the
    username."""
    return _aggregate(period, {"key": "created_by", "label": "created_by__username"})


def by_project(period: Period) -> list[UsageRow]:
    """Every project used in the period, heaviest first. ``key`` is the project id, ``label`` its slug and
    ``name`` its name."""
    return _aggregate(period, {"key": "project", "label": "project__slug", "name": "project__name"})


def by_user_id(period: Period) -> dict[int, UsageRow]:
    return {row.key: row for row in by_user(period)}


# --- bar charts, drawn server-side as inline SVG --

CHART_WIDTH = 640
LABEL_WIDTH = 150
VALUE_WIDTH = 80
BAR_HEIGHT = 18
BAR_GAP = 8
CHART_ROWS = 15


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(title: str, rows: list[UsageRow], measure: str, *, unit: str = "") -> dict[str, Any]:
    """Geometry for a horizontal bar chart of ``measure`` over the top rows. Every number is preformatted as a
    string so that the template writes SVG attributes, not localized numbers."""
    ranked = sorted(rows, key=lambda r: (-getattr(r, measure), r.label))
    shown = [r for r in ranked if getattr(r, measure) > 0][:CHART_ROWS]
    top = max((getattr(r, measure) for r in shown), default=0) or 1
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    bars = []
    for i, row in enumerate(shown):
        value = getattr(row, measure)
        y = i * (BAR_HEIGHT + BAR_GAP)
        width = max(span * value / top, 1.0)
        text = f"{value:,.0f}" if measure == "images" else f"{value:,.1f}"
        bars.append(
            {
                "label": _short(row.label),
                "full_label": row.label,
                "text": f"{text}{unit}",
                "y": f"{y}",
                "text_y": f"{y + BAR_HEIGHT * 0.72:.1f}",
                "x": f"{LABEL_WIDTH}",
                "width": f"{width:.1f}",
                "value_x": f"{LABEL_WIDTH + width + 6:.1f}",
            }
        )
    height = max(len(bars) * (BAR_HEIGHT + BAR_GAP) - BAR_GAP, BAR_HEIGHT)
    return {
        "title": title,
        "bars": bars,
        "width": f"{CHART_WIDTH}",
        "height": f"{height}",
        "bar_height": f"{BAR_HEIGHT}",
        "label_x": f"{LABEL_WIDTH - 8}",
        "more": max(len([r for r in ranked if getattr(r, measure) > 0]) - CHART_ROWS, 0),
    }
