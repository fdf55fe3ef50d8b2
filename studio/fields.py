"""Field types the API schemas are built from: each states a value's limits once, for validation and for
the OpenAPI schema alike.

Numbers are strict (a JSON ``"20"`` is not the number 20), text refuses what no database column can hold
(NUL characters, lone surrogates), and required text must hold more than white space. The JSON schema of each
type says exactly that, so a client generating values from the schema sends only values the studio takes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Annotated, Any

import annotated_types
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BeforeValidator,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# What str.strip() removes, and what JSON Schema's (ECMA-262) \s matches besides: a value is blank when
# nothing but these is left.
_BLANK = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# The same as a JSON Schema pattern: no NUL anywhere, and (required text) one character that is not blank.
ANY_TEXT = r"^[^\u0000]*$"
SOME_TEXT = r"^[^\u0000]*[^\s\u0000\u001c-\u001f\u0085][^\u0000]*$"


class Messages:
    """Sentences for one field's errors, by pydantic error type, in place of the general ones:
    ``Annotated[UUID, Messages(missing="Choose a start image.")]``."""

    def __init__(self, **by_type: str) -> None:
        self.by_type = by_type


def _clean_text(*, strip: bool, required: bool) -> Any:
    def clean(value: str) -> str:
        if "\x00" in value:
            raise PydanticCustomError("text_nul", "Text may not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PydanticCustomError("text_unicode", "Text must be valid Unicode.") from exc
        cleaned = value.strip(_BLANK) if strip else value
        if required and not cleaned.strip(_BLANK):
            raise PydanticCustomError("text_blank", "This field is required.")
        return cleaned

    return clean


class Text(annotated_types.GroupedMetadata):
    """``Annotated[str, Text(200)]``: a string of at most ``max_length`` characters, white space trimmed
    (unless ``strip=False``); ``required`` text must not be blank."""

    def __init__(self, max_length: int, *, required: bool = False, strip: bool = True) -> None:
        self.max_length, self.required, self.strip = max_length, required, strip

    def __iter__(self) -> Iterator[Any]:
        schema: dict[str, Any] = {
            "type": "string",
            "maxLength": self.max_length,
            "pattern": SOME_TEXT if self.required else ANY_TEXT,
        }
        if self.required:
            schema["minLength"] = 1
        yield Strict()
        yield annotated_types.MaxLen(self.max_length)
        yield AfterValidator(_clean_text(strip=self.strip, required=self.required))
        yield WithJsonSchema(schema)


class Whole(annotated_types.GroupedMetadata):
    """``Annotated[int, Whole(1, 150)]``: a whole JSON number from ``ge`` to ``le``, never a string or a
    boolean (the API's JSON parser reads ``20.0`` as 20, as JSON Schema's "integer" does)."""

    def __init__(self, ge: int, le: int) -> None:
        self.ge, self.le = ge, le

    def __iter__(self) -> Iterator[Any]:
        yield Strict()
        yield annotated_types.Ge(self.ge)
        yield annotated_types.Le(self.le)


class Real(annotated_types.GroupedMetadata):
    """``Annotated[float, Real(0, 30)]``: a finite JSON number (whole ones too) from ``ge`` to ``le``."""

    def __init__(self, ge: float, le: float) -> None:
        self.ge, self.le = ge, le

    def __iter__(self) -> Iterator[Any]:
        yield Strict()
        yield annotated_types.Ge(self.ge)
        yield annotated_types.Le(self.le)
        yield AllowInfNan(False)


Bool = Annotated[bool, Strict()]

# Names in URLs.
SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"
USERNAME_PATTERN = r"^[\w.@+-]+$"
SLUG_MAX = 50
Slug = Annotated[str, Field(max_length=SLUG_MAX, pattern=SLUG_PATTERN, description="A project's slug.")]
Username = Annotated[str, Field(max_length=150, pattern=USERNAME_PATTERN)]

# A moment in answers: written as Python's isoformat() (``2026-03-07T09:05:00+00:00``), as the API always has.
Moment = Annotated[dt.datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: Any) -> Any:
    """A day as RFC 3339 writes one (``2026-03-07``): not ``2026-3-7``, and not a number of seconds."""
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DAY.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("date_parsing", "Enter a date as YYYY-MM-DD.")


Day = Annotated[dt.date, BeforeValidator(_iso_day), WithJsonSchema({"type": "string", "format": "date"})]
