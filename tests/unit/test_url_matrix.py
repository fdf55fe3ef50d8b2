"""Every URL the studio defines, for every kind of visitor: anonymous, outsider, viewer, artist, lead, admin.

Objects a visitor may not see answer 404. Writes are sent with bodies that are invalid for those allowed to
make them (400), so the matrix checks the permission decision without depending on side effects. A new URL
fails ``test_every_url_is_in_the_matrix`` until it is added here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.files.base import ContentFile
from django.urls import URLResolver, get_resolver
from PIL import Image

from gallery.models import Asset, Board
from gallery.pngmeta import png_with_provenance
from generation.models import Job
from generation.routing import websocket_urlpatterns
from studio.models import ApiToken
from tests import factories

ROLES = ["anonymous", "outsider", "viewer", "artist", "lead", "admin"]
WHO = {"outsider": "charlie", "viewer": "vera", "artist": "bob", "lead": "alice", "admin": "root"}


def expect(anonymous: int, outsider: int, viewer: int, artist: int, lead: int, admin: int) -> dict[str, int]:
    return dict(zip(ROLES, (anonymous, outsider, viewer, artist, lead, admin), strict=True))


PAGE = expect(302, 200, 200, 200, 200, 200)  # any signed-in user
PROJECT_PAGE = expect(302, 404, 200, 200, 200, 200)  # members (and admins)
ADMIN_PAGE = expect(302, 404, 404, 404, 404, 200)
API_USER = expect(401, 200, 200, 200, 200, 200)
API_MEMBER = expect(401, 404, 200, 200, 200, 200)
API_ADMIN = expect(401, 404, 404, 404, 404, 200)

# name → (method, URL kwargs, body, expected status per role)
MATRIX: dict[str, tuple[str, dict[str, str], Any, dict[str, int]]] = {
    "home": ("GET", {}, None, PAGE),
    "help-permissions": ("GET", {}, None, PAGE),
    "help-privacy": ("GET", {}, None, PAGE),
    "verify": ("GET", {}, None, PAGE),
    "manage": ("GET", {}, None, expect(302, 404, 404, 404, 404, 302)),
    "manage-users": ("GET", {}, None, ADMIN_PAGE),
    "manage-user-new": ("GET", {}, None, ADMIN_PAGE),
    "manage-user-deactivate": ("GET", {"username": "bob"}, None, ADMIN_PAGE),
    "manage-usage": ("GET", {}, None, ADMIN_PAGE),
    "manage-audit": ("GET", {}, None, ADMIN_PAGE),
    "manage-audit-export": ("GET", {}, None, ADMIN_PAGE),
    "manage-quotas": ("GET", {}, None, ADMIN_PAGE),
    "manage-models": ("GET", {}, None, ADMIN_PAGE),
    "manage-model-remove": (
        "POST",
        {"kind": "model", "item_id": "not-installed"},
        {},
        expect(302, 404, 404, 404, 404, 404),
    ),
    "login": ("GET", {}, None, expect(200, 302, 302, 302, 302, 302)),
    "logout": ("POST", {}, {}, expect(302, 302, 302, 302, 302, 302)),
    "project": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "gallery": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "project-settings": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "account": ("GET", {}, None, PAGE),
    "account-token-create": ("POST", {}, {"name": ""}, expect(302, 400, 400, 400, 400, 400)),
    "account-token-revoke": ("POST", {"token_id": "{alice_token}"}, {}, expect(302, 404, 404, 404, 302, 404)),
    "account-password": ("POST", {}, {}, expect(302, 400, 400, 400, 400, 400)),
    "job": ("GET", {"job_id": "{job}"}, None, PROJECT_PAGE),
    "asset": ("GET", {"asset_id": "{asset}"}, None, PROJECT_PAGE),
    "asset-image": ("GET", {"asset_id": "{asset}"}, None, PROJECT_PAGE),
    "asset-submit": ("POST", {"asset_id": "{asset}"}, {}, expect(302, 404, 403, 302, 302, 302)),
    "asset-review": ("POST", {"asset_id": "{asset}"}, {}, expect(302, 404, 403, 403, 400, 400)),
    "asset-comment": ("POST", {"asset_id": "{asset}"}, {"text": ""}, expect(302, 404, 400, 400, 400, 400)),
    "gallery-submit": ("POST", {"slug": "poster"}, {}, expect(302, 404, 403, 302, 302, 302)),
    "notifications": ("GET", {}, None, PAGE),
    "notifications-read": ("POST", {}, {}, expect(302, 302, 302, 302, 302, 302)),
    "asset-thumb": ("GET", {"asset_id": "{asset}"}, None, PROJECT_PAGE),
    "asset-mask": ("GET", {"asset_id": "{asset}"}, None, PROJECT_PAGE),
    "asset-delete": ("POST", {"asset_id": "{asset}"}, {}, expect(302, 404, 403, 403, 302, 302)),
    # Boards and tags: artists, leads and admins change them (400 for the empty bodies), viewers may not;
    # favourites are personal, so viewers may star. Only leads and admins delete boards.
    "boards": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "board-create": ("POST", {"slug": "poster"}, {"name": ""}, expect(302, 404, 403, 400, 400, 400)),
    "board": ("GET", {"board_id": "{board}"}, None, PROJECT_PAGE),
    "board-remove": ("POST", {"board_id": "{board}"}, {}, expect(302, 404, 403, 400, 400, 400)),
    "board-delete": ("POST", {"board_id": "{board}"}, {}, expect(302, 404, 403, 403, 302, 302)),
    "asset-board": ("POST", {"asset_id": "{asset}"}, {}, expect(302, 404, 403, 400, 400, 400)),
    "asset-tag": ("POST", {"asset_id": "{asset}"}, {"tag": ""}, expect(302, 404, 403, 400, 400, 400)),
    "asset-untag": ("POST", {"asset_id": "{asset}"}, {"tag": ""}, expect(302, 404, 403, 400, 400, 400)),
    "asset-favourite": ("POST", {"asset_id": "{asset}"}, {}, expect(302, 404, 400, 400, 400, 400)),
    "compare": ("GET", {"slug": "poster"}, None, expect(302, 404, 400, 400, 400, 400)),  # no ?ids
    "api-openapi": ("GET", {}, None, API_USER),
    "api-me": ("GET", {}, None, API_USER),
    "api-me-quota": ("GET", {}, None, API_USER),
    "api-models": ("GET", {}, None, API_USER),
    "api-projects": ("POST", {}, {"name": ""}, expect(401, 400, 400, 400, 400, 400)),
    "api-project-members": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 403, 400, 400)),
    "api-project-member": (
        "PATCH",
        {"slug": "poster", "username": "bob"},
        {"role": "boss"},
        expect(401, 404, 403, 403, 400, 400),
    ),
    "api-project-jobs": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 400, 400, 400)),
    "api-project-assets": ("GET", {"slug": "poster"}, None, API_MEMBER),
    "api-project-export": ("GET", {"slug": "poster"}, None, expect(401, 404, 403, 403, 200, 200)),
    # Uploads: artists, leads and admins (400 for the body without a file), viewers may not.
    "api-project-uploads": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 400, 400, 400)),
    "api-project-quota": ("PUT", {"slug": "poster"}, {"images": -1}, expect(401, 404, 403, 403, 403, 400)),
    "api-job": ("GET", {"job_id": "{job}"}, None, API_MEMBER),
    "api-job-cancel": ("POST", {"job_id": "{job}"}, {}, expect(401, 404, 403, 202, 202, 202)),
    "api-asset": ("GET", {"asset_id": "{asset}"}, None, API_MEMBER),
    "api-asset-image": ("GET", {"asset_id": "{asset}"}, None, API_MEMBER),
    "api-asset-thumbnail": ("GET", {"asset_id": "{asset}"}, None, API_MEMBER),
    "api-asset-mask": ("GET", {"asset_id": "{asset}"}, None, API_MEMBER),
    # The asset is Bob's draft: Bob (its author), leads and admins may submit it; a decision needs a
    # submitted asset and a decision, so leads get 400 for the empty body.
    "api-asset-review": ("POST", {"asset_id": "{asset}"}, {}, expect(401, 404, 403, 403, 400, 400)),
    "api-asset-submit": ("POST", {"asset_id": "{asset}"}, {}, expect(401, 404, 403, 200, 200, 200)),
    "api-asset-reviews": ("GET", {"asset_id": "{asset}"}, None, API_MEMBER),
    "api-project-boards": ("POST", {"slug": "poster"}, {"name": ""}, expect(401, 404, 403, 400, 400, 400)),
    "api-board": ("GET", {"board_id": "{board}"}, None, API_MEMBER),
    "api-board-items": ("POST", {"board_id": "{board}"}, {}, expect(401, 404, 403, 400, 400, 400)),
    "api-asset-tags": ("POST", {"asset_id": "{asset}"}, {"tag": ""}, expect(401, 404, 403, 400, 400, 400)),
    "api-asset-favourite": ("POST", {"asset_id": "{asset}"}, None, API_MEMBER),
    "api-asset-comments": (
        "POST",
        {"asset_id": "{asset}"},
        {"text": ""},
        expect(401, 404, 400, 400, 400, 400),
    ),
    "api-me-notifications": ("GET", {}, None, API_USER),
    "api-credentials-root": ("GET", {}, None, API_USER),
    # No image sent: 400 for everyone signed in (the answer never depends on who asks but for matches).
    "api-verify": ("POST", {}, {}, expect(401, 400, 400, 400, 400, 400)),
    "api-admin-users": ("GET", {}, None, API_ADMIN),
    "api-admin-user-quota": (
        "PUT",
        {"username": "bob"},
        {"images": -1},
        expect(401, 404, 404, 404, 404, 400),
    ),
    "api-admin-user-deactivate": ("POST", {"username": "bob"}, {}, API_ADMIN),
    "api-admin-audit": ("GET", {}, None, API_ADMIN),
    "api-not-found": ("GET", {"path": "v1/nothing"}, None, expect(404, 404, 404, 404, 404, 404)),
    "healthz": ("GET", {}, None, expect(200, 200, 200, 200, 200, 200)),
    "readyz": ("GET", {}, None, expect(503, 503, 503, 503, 503, 503)),  # no broker or worker in unit tests
}

WEBSOCKETS = {
    "ws-job": ({"job_id": "{job}"}, expect(403, 403, 101, 101, 101, 101)),
    "ws-project": ({"slug": "poster"}, expect(403, 403, 101, 101, 101, 101)),
}


def http_patterns() -> dict[str, str]:
    """name → route of every HTTP URL the studio defines (Django's own admin site excepted: its pages
    are Django's, and are checked as a whole below)."""

    def walk(patterns: list, prefix: str = "") -> list[tuple[str, str]]:
        found = []
        for p in patterns:
            if isinstance(p, URLResolver):
                if getattr(p, "app_name", None) != "admin":
                    found += walk(p.url_patterns, prefix + str(p.pattern))
            else:
                found.append((p.name or "api-not-found", prefix + str(p.pattern)))
        return found

    return dict(walk(get_resolver().url_patterns))


def test_every_url_is_in_the_matrix():
    assert sorted(set(http_patterns()) - set(MATRIX)) == []
    assert sorted({p.name for p in websocket_urlpatterns} - set(WEBSOCKETS)) == []
    assert sorted(set(MATRIX) - set(http_patterns())) == [], "the matrix names URLs that no longer exist"


@pytest.fixture
def world(db, demo_model_dir):
    team = factories.team()
    job = Job.objects.create(
        project=team["project"],
        created_by=team["bob"],
        model_id="demo",
        queue="gpu",
        params={"prompt": "a red circle", "steps": 20},
        progress_total=20,
    )
    png = png_with_provenance(
        Image.new("RGB", (8, 8)),
        {
            "prompt": "x",
            "steps": 1,
            "scheduler": "Euler",
            "guidance_scale": 1,
            "seed": 1,
            "width": 8,
            "height": 8,
        },
        {"model_name": "Demo", "model_sha256": "0" * 64},
    )
    asset = Asset(
        project=team["project"],
        job=job,
        width=8,
        height=8,
        seed=1,
        prompt="x",
        params={},
        model_id="demo",
        model_name="Demo",
        model_sha256="0" * 64,
        created_by=team["bob"],
    )
    asset.file.save("m.png", ContentFile(png), save=True)
    asset.mask.save("m.mask.png", ContentFile(png), save=True)  # as if inpainted
    factories.token(team["alice"])
    values = {
        "job": str(job.id),
        "asset": str(asset.id),
        "alice_token": str(ApiToken.objects.get(user=team["alice"]).id),
        "board": str(
            Board.objects.create(project=team["project"], name="Picks", created_by=team["alice"]).id
        ),
    }
    return team, values


def build_path(route: str, kwargs: dict[str, str], values: dict[str, str]) -> str:
    import re

    path = route
    for key, value in kwargs.items():
        path = re.sub(r"<(?:\w+:)?" + key + ">", value.format(**values), path)
    return "/" + path.replace("^", "").replace("(?P<path>.*)$", kwargs.get("path", ""))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_url(client, world, name, role):
    team, values = world
    method, kwargs, body, expected = MATRIX[name]
    if role != "anonymous":
        client.force_login(team[WHO[role]])
    path = build_path(http_patterns()[name], kwargs, values)
    data = json.dumps(body) if body is not None and name.startswith("api") else body
    send = getattr(client, method.lower())
    if method == "GET":
        response = send(path)
    elif name.startswith("api"):
        response = send(path, data=data, content_type="application/json")
    else:
        response = send(path, data=data or {})
    assert response.status_code == expected[role], f"{method} {path} as {role}"
    if expected[role] == 302 and role == "anonymous" and name not in ("logout", "manage"):
        assert response["Location"].startswith("/accounts/login/")


# URLs that answer more than one method: the other methods, checked the same way.
# (name, method) → (URL kwargs, body, expected status per role)
MORE_METHODS: dict[tuple[str, str], tuple[dict[str, str], Any, dict[str, int]]] = {
    ("api-asset", "DELETE"): ({"asset_id": "{asset}"}, None, expect(401, 404, 403, 403, 204, 204)),
    ("api-asset-comments", "GET"): ({"asset_id": "{asset}"}, None, API_MEMBER),
    ("api-project-boards", "GET"): ({"slug": "poster"}, None, API_MEMBER),
    ("api-board", "DELETE"): ({"board_id": "{board}"}, None, expect(401, 404, 403, 403, 204, 204)),
    ("api-board-items", "DELETE"): ({"board_id": "{board}"}, {}, expect(401, 404, 403, 400, 400, 400)),
    ("api-asset-tags", "DELETE"): (
        {"asset_id": "{asset}"},
        {"tag": ""},
        expect(401, 404, 403, 400, 400, 400),
    ),
    ("api-asset-favourite", "DELETE"): ({"asset_id": "{asset}"}, None, API_MEMBER),
    # An install with an empty form: the form again with its errors, for admins only.
    ("manage-models", "POST"): ({}, {}, expect(302, 404, 404, 404, 404, 400)),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method"), sorted(MORE_METHODS))
def test_url_other_methods(client, world, name, method, role):
    team, values = world
    kwargs, body, expected = MORE_METHODS[(name, method)]
    if role != "anonymous":
        client.force_login(team[WHO[role]])
    path = build_path(http_patterns()[name], kwargs, values)
    send = getattr(client, method.lower())
    data = json.dumps(body) if body is not None else None
    response = send(path, data=data, content_type="application/json")
    assert response.status_code == expected[role], f"{method} {path} as {role}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(WEBSOCKETS))
def test_websocket(world, name, role):
    from studio.asgi import application

    team, values = world
    kwargs, expected = WEBSOCKETS[name]
    route = next(str(p.pattern) for p in websocket_urlpatterns if p.name == name)
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    if role != "anonymous":
        headers.append((b"authorization", f"Bearer {factories.token(team[WHO[role]])}".encode()))

    async def attempt() -> bool:
        ws = WebsocketCommunicator(application, build_path(route, kwargs, values), headers=headers)
        connected, _ = await ws.connect()
        if connected:
            await ws.disconnect()
        return connected

    assert asyncio.run(attempt()) == (expected[role] == 101)


@pytest.mark.parametrize("role", ROLES)
def test_djangos_admin_site_is_for_admins(client, world, role):
    team, _ = world
    if role != "anonymous":
        client.force_login(team[WHO[role]])
    response = client.get("/admin/")
    assert response.status_code == (200 if role == "admin" else 302)
