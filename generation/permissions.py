"""Who may see and act on jobs. Views, API, websocket consumers and tasks all ask here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from studio.models import Role, TokenScope
from studio.permissions import can_manage_models, can_use_admin_area, is_admin, projects_visible_to, role_in

from .models import Job, Style


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    return Job.objects.filter(project__in=projects_visible_to(user))


def can_cancel(user: Any, job: Job) -> bool:
    """Its author (while still allowed to generate there), the project's leads, admins."""
    if is_admin(user):
        return True
    role = role_in(user, job.project)
    if role == Role.LEAD:
        return True
    return role == Role.ARTIST and job.created_by_id == user.id


# --- project styles --


def styles_visible_to(user: Any) -> QuerySet[Style]:
    """Live styles of the projects the user sees (members read them; outsiders get 404)."""
    return Style.objects.filter(project__in=projects_visible_to(user), deleted=False)


def can_manage_styles(user: Any, project: Any) -> bool:
    """Create, edit, delete and copy a project's styles: its leads and site admins."""
    return role_in(user, project) == Role.LEAD


# --- the worker fleet --


def can_see_workers(user: Any) -> bool:
    """Manage → Workers and ``GET /api/v1/admin/workers``: part of the admin area, so site admins only
    (anyone else gets 404)."""
    return can_use_admin_area(user)


def can_watch_workers(user: Any, token: Any = None) -> bool:
    """``ws/workers/``: who may see the workers, and when the socket was opened with an API token, a token
    with the admin scope (what the same facts need from ``GET /api/v1/admin/workers``)."""
    return can_see_workers(user) and (token is None or token.allows(TokenScope.ADMIN))


# --- the model library --


def can_manage_library(user: Any) -> bool:
    """Installing and removing models, LoRAs, ControlNets, IP-Adapters, preview decoders and annotators on
    Manage → Models: site admins only (anyone else gets 404)."""
    return can_use_admin_area(user) and can_manage_models(user)


def can_manage_annotators(user: Any) -> bool:
    """Listing, installing and removing ControlNet annotators (Manage → Models, ``/api/v1/admin/annotators``):
    who manages models, site admins only (anyone else gets 404)."""
    return can_use_admin_area(user) and can_manage_models(user)
