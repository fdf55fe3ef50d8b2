"""Errors services raise; the API turns them into JSON answers and pages into form messages."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(
        self, message: str, errors: dict[str, list[str]] | None = None, extra: dict | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.extra = extra or {}  # more members of the JSON error body


class InvalidInput(ServiceError):
    status = 400


class NotAllowed(ServiceError):
    """A visible object the caller may not change."""

    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class QuotaExceeded(ServiceError):
    """The sentence says what was used, the limit and when it resets; ``extra["quota"]`` has the numbers."""

    status = 429


class Unavailable(ServiceError):
    """A part of the API that this installation does not offer (yet)."""

    status = 501
