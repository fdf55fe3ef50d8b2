"""Template context every page gets from the gallery."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .models import Notification


def unread_notifications(request: HttpRequest) -> dict[str, Any]:
    """The header's unread count: one COUNT query, and none at all for anonymous visitors."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": Notification.objects.filter(user=user, read_at__isnull=True).count()}
