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


def asset(p: Project, author: User, *, status: str = "draft", prompt: str = "a red circle", size: int = 64):
    """An asset with a real (plain) PNG in storage, made directly: no job, no generation."""
    import io

    from django.core.files.base import ContentFile
    from PIL import Image

    from gallery.models import Asset

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(buffer, format="PNG")
    a = Asset(
        project=p,
        width=size,
        height=size,
        seed=1,
        prompt=prompt,
        params={"prompt": prompt, "seed": 1, "steps": 20},
        model_id="demo",
        model_name="Demo",
        model_sha256="0" * 64,
        status=status,
        created_by=author,
    )
    a.file.save(f"{a.id}.png", ContentFile(buffer.getvalue()), save=True)
    return a


def job_params(**overrides):
    """The parameters a text-to-image job of the demo model runs with, as the studio stores them."""
    params = {
        "mode": "txt2img",
        "prompt": "a red circle",
        "negative_prompt": "",
        "model": "demo",
        "width": 64,
        "height": 64,
        "steps": 20,
        "guidance_scale": 5.0,
        "seed": 1,
        "scheduler": "Euler",
        "num_images": 1,
    }
    return {**params, **overrides}
