"""Keyset pagination over ``(-<time field>, -id)`` or ascending: stable under inserts, constant cost per page.

The time field is ``created_at`` unless a caller names another (audit events order on ``time``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet

from .errors import InvalidInput

M = TypeVar("M", bound=Model)


# A cursor is "<microseconds since 1970 UTC>.<pk>": it names a row's place in the order. Every string of this
# form is a place (before the first row, after the last, or between two), so any cursor a client builds from
# the pattern is answered with a page, and only a string of another form is refused.
UUID_CURSOR = r"^-?[0-9]{1,16}\.[0-9a-f]{32}$"
INT_CURSOR = r"^-?[0-9]{1,16}\.[0-9]{1,18}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^(-?[0-9]{1,16})\.([0-9a-f]{32}|[0-9]{1,18})$")


def encode_cursor(obj: Any, field: str = "created_at") -> str:
    micros = (getattr(obj, field) - _EPOCH) // timedelta(microseconds=1)
    pk = obj.pk.hex if isinstance(obj.pk, uuid.UUID) else str(obj.pk)
    return f"{micros}.{pk}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise _bad_cursor()
    # Sixteen digits of microseconds stay within the years 1653 to 2286.
    return _EPOCH + timedelta(microseconds=int(match.group(1))), match.group(2)


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
