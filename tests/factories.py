"""Small factories for the stories tests tell: Alice leads a project, Bob is her artist, Vera watches,
and Charlie has no access to any of it."""

from __future__ import annotations

from typing import Any

from studio.models import Membership, Project, Role, User
from studio.services import do_create_token


def user(username: str, *, admin: bool = False, password: str = "correct horse battery") -> User:
    if admin:
        return User.objects.create_superuser(username=username, password=password, email="")
    return User.objects.create_user(username=username, password=password, email=f"{username}@studio.test")


def project(lead: User, name: str = "Poster", slug: str | None = None) -> Project:
    p = Project.objects.create(name=name, slug=slug or name.lower().replace(" ", "-"), created_by=lead)
    Membership.objects.create(project=p, user=lead, role=Role.LEAD)
    return p


def member(p: Project, u: User, role: str) -> Membership:
    return Membership.objects.create(project=p, user=u, role=role)


def token(u: User) -> str:
    return do_create_token(u, "test")[1]


def team() -> dict[str, Any]:
    alice, bob, vera, charlie = user("alice"), user("bob"), user("vera"), user("charlie")
    root = user("root", admin=True)
    poster = project(alice)
    member(poster, bob, Role.ARTIST)
    member(poster, vera, Role.VIEWER)
    return {"alice": alice, "bob": bob, "vera": vera, "charlie": charlie, "root": root, "project": poster}
