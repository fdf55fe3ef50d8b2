"""Who may see or do what in projects. Views, API, consumers and tasks all ask here."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from .models import Membership, Project, Role

GENERATING_ROLES = {Role.LEAD, Role.ARTIST}


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_superuser)


def projects_visible_to(user: Any) -> QuerySet[Project]:
    """Projects the user belongs to; admins see all. Anonymous and inactive users see none."""
    if not (user.is_authenticated and user.is_active):
        return Project.objects.none()
    if is_admin(user):
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def role_in(user: Any, project: Project) -> str | None:
    """The user's role in the project, or None. Admins act as leads everywhere."""
    if not (user.is_authenticated and user.is_active):
        return None
    role = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    return _effective_role(user, role)


def _effective_role(user: Any, member_role: str | None) -> str | None:
    if member_role is None and is_admin(user):
        return Role.LEAD
    return member_role


def visible_project_and_role_or_404(user: Any, **lookup: Any) -> tuple[Project, str | None]:
    """A project the user sees (Http404 otherwise) and their role in it, as ``role_in`` says, in one query
    (for pages that are read on every visit, such as the gallery)."""
    member_role = Membership.objects.filter(project=OuterRef("pk"), user_id=user.pk).values("role")[:1]
    project = get_object_or_404(
        projects_visible_to(user).annotate(member_role=Subquery(member_role)), **lookup
    )
    return project, _effective_role(user, project.member_role)  # type: ignore[attr-defined]  # annotated


def can_create_project(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active)


def can_manage_members(user: Any, project: Project) -> bool:
    return role_in(user, project) == Role.LEAD


def can_delete_project(user: Any, project: Project) -> bool:
    return role_in(user, project) == Role.LEAD


def can_set_retention(user: Any, project: Project) -> bool:
    return role_in(user, project) == Role.LEAD


def settings_page_abilities(role: str | None) -> dict[str, bool]:
    """What the project's settings page offers someone of ``role`` (asked once per request), by the same
    rules as ``can_manage_members``, ``can_set_retention`` and ``can_delete_project``."""
    lead = role == Role.LEAD
    return {"can_manage": lead, "can_set_retention": lead, "can_delete": lead}


def can_generate(user: Any, project: Project) -> bool:
    return role_in(user, project) in GENERATING_ROLES


def roles_of(user: Any) -> dict[int, str]:
    """The user's role in each project they belong to, by project id (one query)."""
    return dict(Membership.objects.filter(user_id=user.id).values_list("project_id", "role"))


# --- the site admin area --
#
# Pages under /manage/ and endpoints under /api/v1/admin/ exist only for site admins. For anyone else they
# are invisible, like any object one may not see: signed-in non-admins get 404 (not 403, which would advertise
# that something is there); anonymous visitors are sent to sign in (pages) or get 401 (API). Every admin-area
# view and handler asks this one predicate.


def can_use_admin_area(user: Any) -> bool:
    """Users, usage and the audit log: site admins only."""
    return is_admin(user)


def can_manage_models(user: Any) -> bool:
    """Installing and removing models and LoRAs (from paths on the server): site admins only."""
    return is_admin(user)


def can_deactivate(actor: Any, user: Any) -> bool:
    """Admins deactivate anyone but themselves (so the studio always keeps the admin who is acting)."""
    return is_admin(actor) and actor.pk != user.pk


# The permission matrix, as people read it (the /help/permissions/ page). The predicates above enforce it;
# tests/unit/test_url_matrix.py checks every URL against it for every role.
ROLES = ["viewer", "artist", "lead", "admin"]
PERMISSION_MATRIX: list[tuple[str, set[str]]] = [
    ("Create projects (and become their lead)", {"viewer", "artist", "lead", "admin"}),
    ("See a project's jobs, images and live previews", {"viewer", "artist", "lead", "admin"}),
    ("Generate images", {"artist", "lead", "admin"}),
    ("Cancel their own jobs", {"artist", "lead", "admin"}),
    ("Cancel anyone's jobs in the project", {"lead", "admin"}),
    ("Add and remove members, change roles", {"lead", "admin"}),
    ("Review assets (approve, reject, request changes)", {"lead", "admin"}),
    ("Delete assets", {"lead", "admin"}),
    ("Export approved assets", {"lead", "admin"}),
    ("Delete the project and everything in it", {"lead", "admin"}),
    ("Set how long drafts and rejected images are kept", {"lead", "admin"}),
    ("See and use the project's styles", {"viewer", "artist", "lead", "admin"}),
    ("Create, edit, delete and copy styles", {"lead", "admin"}),
    ("Install and remove models and LoRAs", {"admin"}),
    ("Set quotas", {"admin"}),
    ("See usage", {"admin"}),
    ("See the audit log", {"admin"}),
    ("See the workers, what they hold and run", {"admin"}),
    ("Create and deactivate users", {"admin"}),
]
