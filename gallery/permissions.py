"""Who may see which assets. Every gallery view, API handler and consumer fetches assets through here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from studio.permissions import projects_visible_to

from .models import Asset


def assets_visible_to(user: Any) -> QuerySet[Asset]:
    return Asset.objects.filter(project__in=projects_visible_to(user))
