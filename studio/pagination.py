"""Keyset pagination over ``(-created_at, -id)``: stable under inserts, constant cost per page."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

from .errors import InvalidInput

M = TypeVar("M", bound=Model)


def encode_cursor(obj: Any) -> str:
    raw = json.dumps([obj.created_at.isoformat(), str(obj.pk)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, pk = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        return datetime.fromisoformat(created), str(pk)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("The cursor is not valid.", {"cursor": ["Not a cursor from this API."]}) from exc


def keyset_page(queryset: QuerySet[M], cursor: str | None, size: int) -> tuple[list[M], str | None]:
    """Newest first. Returns the page and the cursor of the next one (None on the last page)."""
    queryset = queryset.order_by("-created_at", "-pk")
    if cursor:
        created, pk = decode_cursor(cursor)
        queryset = queryset.filter(Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk))
    rows = list(queryset[: size + 1])
    next_cursor = encode_cursor(rows[size - 1]) if len(rows) > size else None
    return rows[:size], next_cursor
