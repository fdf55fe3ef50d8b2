"""Reads for boards, tags and favourites that several pages share (the gallery, boards and asset pages)."""

from __future__ import annotations

from typing import Any

from .models import Asset, Board, Favourite
from .permissions import can_curate, can_favourite


def is_favourite(user: Any, asset: Asset) -> bool:
    """Whether the user starred this asset (one query; grids read it with the rows: ``cards.card_rows``)."""
    return bool(user.is_authenticated) and Favourite.objects.filter(user=user, asset=asset).exists()


def asset_page_context(user: Any, asset: Asset) -> dict[str, Any]:
    """What the asset page's boards, tags and star need (a few constant queries)."""
    curate = can_curate(user, asset.project)
    return {
        "can_curate": curate,
        "can_favourite": can_favourite(user, asset),
        "is_favourite": is_favourite(user, asset),
        "asset_tags": list(asset.tags.all()),
        "asset_boards": list(asset.boards.all()),
        "project_boards": list(Board.objects.filter(project_id=asset.project_id)) if curate else [],
        "project_tags": list(asset.project.tags.values_list("name", flat=True)) if curate else [],
    }
