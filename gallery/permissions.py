"""Who may see which assets. Every gallery view, API handler and consumer fetches assets through here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from studio.models import Project, Role
from studio.permissions import projects_visible_to, role_in

from .models import Asset, Board


def assets_visible_to(user: Any) -> QuerySet[Asset]:
    return Asset.objects.filter(project__in=projects_visible_to(user))


def can_delete(user: Any, asset: Asset) -> bool:
    """Leads of the asset's project and site admins (the permission matrix's "Delete assets")."""
    return role_in(user, asset.project) == Role.LEAD


def can_export(user: Any, project: Project) -> bool:
    """Leads of the project and site admins (the permission matrix's "Export approved assets")."""
    return _exports(role_in(user, project))


def _exports(role: str | None) -> bool:
    return role == Role.LEAD


def can_review(user: Any, asset: Asset) -> bool:
    """Leads of the asset's project and site admins decide (the matrix's "Review assets")."""
    return role_in(user, asset.project) == Role.LEAD


def can_submit(user: Any, asset: Asset) -> bool:
    """The asset's author while they may still generate in the project, and the project's leads and admins."""
    role = role_in(user, asset.project)
    if role == Role.LEAD:
        return True
    return role == Role.ARTIST and asset.created_by_id == user.pk


def can_comment(user: Any, asset: Asset) -> bool:
    """Everyone who sees the asset (viewers included) may comment on it."""
    return role_in(user, asset.project) is not None


def can_submit_any(user: Any, project: Project) -> bool:
    """Whether the gallery offers a "Submit for review" selection at all (artists, leads, admins)."""
    return _submits(role_in(user, project))


def _submits(role: str | None) -> bool:
    return role in (Role.LEAD, Role.ARTIST)


def gallery_page_abilities(role: str | None) -> dict[str, Any]:
    """The gallery page's buttons for a member with ``role`` (from ``role_in`` or
    ``visible_project_and_role_or_404``), as ``can_export`` and ``can_submit_any`` decide them."""
    return {"role": role, "can_export": _exports(role), "can_submit": _submits(role)}


# --- boards, tags, favourites --


def boards_visible_to(user: Any) -> QuerySet[Board]:
    return Board.objects.filter(project__in=projects_visible_to(user))


def can_curate(user: Any, project: Project) -> bool:
    """Create boards, add and remove their images, tag and untag: members who may generate (artists, leads,
    admins). Viewers look but do not rearrange."""
    return role_in(user, project) in (Role.LEAD, Role.ARTIST)


def can_delete_board(user: Any, board: Board) -> bool:
    """Leads of the board's project and site admins."""
    return role_in(user, board.project) == Role.LEAD


def can_favourite(user: Any, asset: Asset) -> bool:
    """Everyone who sees the asset, viewers included: a favourite is personal."""
    return role_in(user, asset.project) is not None
