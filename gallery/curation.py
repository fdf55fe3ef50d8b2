"""Reads for boards, tags and favourites that several pages share (the gallery, boards and asset pages)."""

from __future__ import annotations

from typing import Any

from .models import Asset, Board, Favourite
from .permissions import can_curate, can_favourite


def favourite_ids(user: Any, assets: list[Asset]) -> set[Any]:
    """Which of these assets the user starred (one query), for the cards' star."""
    if not assets or not user.is_authenticated:
        return set()
    return set(Favourite.objects.filter(user=user, asset__in=assets).values_list("asset_id", flat=True))


def asset_page_context(user: Any, asset: Asset) -> dict[str, Any]:
    """What the asset page's boards, tags and star need (a few constant queries)."""
    curate = can_curate(user, asset.project)
    return {
        "can_curate": curate,
        "can_favourite": can_favourite(user, asset),
        "is_favourite": Favourite.objects.filter(user=user, asset=asset).exists(),
        "asset_tags": list(asset.tags.all()),
        "asset_boards": list(asset.boards.all()),
        "project_boards": list(Board.objects.filter(project_id=asset.project_id)) if curate else [],
        "project_tags": list(asset.project.tags.values_list("name", flat=True)) if curate else [],
    }
