"""Keyset pagination over ``(-<time field>, -id)`` or ascending: stable under inserts, constant cost per page.

The time field is ``created_at`` unless a caller names another (audit events order on ``time``).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from .errors import InvalidInput

M = TypeVar("M", bound=Model)


def encode_cursor(obj: Any, field: str = "created_at") -> str:
    raw = json.dumps([getattr(obj, field).isoformat(), str(obj.pk)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, pk = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        when = datetime.fromisoformat(created)
        if timezone.is_naive(when):
            raise ValueError("a cursor's time carries its offset")
        return when, str(pk)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc


def _bad_cursor() -> InvalidInput:
    return InvalidInput("The cursor is not valid.", {"cursor": ["Not a cursor from this API."]})


def keyset_page(
    queryset: QuerySet[M],
    cursor: str | None,
    size: int,
    *,
    field: str = "created_at",
    descending: bool = True,
) -> tuple[list[M], str | None]:
    """Newest first by ``field``, then pk (oldest first with ``descending=False``). Returns the page and the
    next page's cursor (None on the last). A cursor only names a position, so it means "after this row" in
    whichever direction the caller asks for."""
    if descending:
        queryset = queryset.order_by(f"-{field}", "-pk")
    else:
        queryset = queryset.order_by(field, "pk")
    if cursor:
        when, pk = decode_cursor(cursor)
        past = "lt" if descending else "gt"
        try:
            # The redundant bound on the time alone lets the database start its index scan at the cursor;
            # the OR on its own makes PostgreSQL walk (and filter) every row before it.
            queryset = queryset.filter(**{f"{field}__{past}e": when}).filter(
                Q(**{f"{field}__{past}": when}) | Q(**{field: when, f"pk__{past}": pk})
            )
        except (ValidationError, ValueError, TypeError) as exc:  # a pk of the wrong shape for this model
            raise _bad_cursor() from exc
    rows = list(queryset[: size + 1])
    next_cursor = encode_cursor(rows[size - 1], field) if len(rows) > size else None
    return rows[:size], next_cursor
