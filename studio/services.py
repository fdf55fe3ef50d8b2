"""Writes in the team layer. Check first, then write; nothing else saves these models."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from . import audit, permissions
from .auth import digest_token, new_token
from .errors import InvalidInput, NotAllowed, NotFound
from .models import ApiToken, Membership, Project, Role

User = get_user_model()


def check_project_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("The project needs a name.", {"name": ["Enter a name."]})
    name = name.strip()
    if len(name) > 120:
        raise InvalidInput("The project name is too long.", {"name": ["At most 120 characters."]})
    return name


def _free_slug(name: str) -> str:
    base = slugify(name)[:50] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def do_create_project(user: Any, name: Any, *, ip: str | None = None) -> Project:
    """Create a project with ``user`` as its first lead."""
    if not permissions.can_create_project(user):
        raise NotAllowed("You may not create projects.")
    name = check_project_name(name)
    for _ in range(5):
        try:
            with transaction.atomic():
                project = Project.objects.create(slug=_free_slug(name), name=name, created_by=user)
                Membership.objects.create(project=project, user=user, role=Role.LEAD)
                audit.record(
                    user, audit.PROJECT_CREATE, target=f"project:{project.slug}", project=project, ip=ip
                )
                return project
        except IntegrityError:
            continue  # a concurrent create took the slug; pick the next one
    raise InvalidInput("Could not find a free address for this project name; try another name.")


def do_add_member(
    actor: Any, project: Project, username: Any, role: Any, *, ip: str | None = None
) -> Membership:
    """Add a user to the project, or change their role if they are already in it."""
    if not permissions.can_manage_members(actor, project):
        raise NotAllowed("Only the project's leads may add members.")
    errors: dict[str, list[str]] = {}
    if role not in Role.values:
        errors["role"] = [f"Choose one of {', '.join(Role.values)}."]
    if not isinstance(username, str) or not username.strip():
        errors["username"] = ["Enter a username or email."]
    if errors:
        raise InvalidInput("Some fields are invalid.", errors)
    lookup = username.strip()
    user = User.objects.filter(is_active=True, username=lookup).first() or (
        User.objects.filter(is_active=True, email__iexact=lookup).first() if "@" in lookup else None
    )
    if user is None:
        raise InvalidInput("No active user has that name.", {"username": ["No active user has that name."]})
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        target = f"user:{user.get_username()}"
        if created:
            audit.record(
                actor, audit.MEMBER_ADD, target=target, project=project, ip=ip, details={"role": role}
            )
        elif membership.role != role:
            details = {"from": membership.role, "to": role}
            membership.role = role
            membership.save(update_fields=["role"])
            audit.record(actor, audit.MEMBER_ROLE, target=target, project=project, ip=ip, details=details)
    return membership


def do_create_token(user: Any, name: str = "", *, ip: str | None = None) -> tuple[ApiToken, str]:
    """Create an API token; the plain token is returned once and never stored."""
    token = new_token()
    row = ApiToken.objects.create(user=user, name=name[:100], prefix=token[:12], digest=digest_token(token))
    audit.record(user, audit.TOKEN_CREATE, target=f"token:{row.prefix}", ip=ip, details={"name": row.name})
    return row, token


def do_revoke_token(user: Any, token_id: int, *, ip: str | None = None) -> None:
    row = ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).first()
    if row is None or not ApiToken.objects.filter(pk=row.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    ):
        raise NotFound("No such token.")
    audit.record(user, audit.TOKEN_REVOKE, target=f"token:{row.prefix}", ip=ip)


def do_ensure_admin(username: str, password: str | None) -> tuple[Any, str | None]:
    """Create the first site admin if no admin exists. Returns (user, generated password or None)."""
    existing = User.objects.filter(is_superuser=True).first()
    if existing is not None:
        return existing, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email="", password=password)
    return user, generated
