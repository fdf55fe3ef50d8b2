"""Who may see or do what in projects. Views, API, consumers and tasks all ask here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

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
    if role is None and is_admin(user):
        return Role.LEAD
    return role


def can_create_project(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active)


def can_manage_members(user: Any, project: Project) -> bool:
    return role_in(user, project) == Role.LEAD


def can_generate(user: Any, project: Project) -> bool:
    return role_in(user, project) in GENERATING_ROLES


def roles_of(user: Any) -> dict[int, str]:
    """The user's role in each project they belong to, by project id (one query)."""
    return dict(Membership.objects.filter(user_id=user.id).values_list("project_id", "role"))
