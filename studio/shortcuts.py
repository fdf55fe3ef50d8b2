from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404

M = TypeVar("M", bound=Model)


def get_visible_or_404(queryset: QuerySet[M], **lookup: Any) -> M:
    """The object from a permission-scoped queryset, or 404 — also for malformed ids."""
    try:
        obj = queryset.filter(**lookup).first()
    except (ValidationError, ValueError) as exc:
        raise Http404 from exc
    if obj is None:
        raise Http404
    return obj
