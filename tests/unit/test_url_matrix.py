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
from django.urls import URLResolver, get_resolver

from generation.routing import websocket_urlpatterns
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
SESSION_REFUSED = expect(401, 401, 401, 401, 401, 401)

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
    "manage-user-mfa-reset": ("GET", {"username": "bob"}, None, ADMIN_PAGE),
    "manage-usage": ("GET", {}, None, ADMIN_PAGE),
    "manage-audit": ("GET", {}, None, ADMIN_PAGE),
    "manage-audit-export": ("GET", {}, None, ADMIN_PAGE),
    "manage-quotas": ("GET", {}, None, ADMIN_PAGE),
    "manage-models": ("GET", {}, None, ADMIN_PAGE),
    "manage-workers": ("GET", {}, None, ADMIN_PAGE),
    "manage-model-remove": (
        "POST",
        {"kind": "model", "item_id": "not-installed"},
        {},
        expect(302, 404, 404, 404, 404, 404),
    ),
    # Signing in (allauth's views). Right after a sign-in the MFA pages may be used; a session that has not
    # just authenticated (force_login) is sent to re-authenticate first, and pages about factors the user does
    # not have answer 404.
    "account_login": ("GET", {}, None, expect(200, 302, 302, 302, 302, 302)),
    "account_logout": ("POST", {}, {}, expect(302, 302, 302, 302, 302, 302)),
    "account_inactive": ("GET", {}, None, expect(200, 200, 200, 200, 200, 200)),
    "account_reauthenticate": ("GET", {}, None, PAGE),
    "mfa_index": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),
    "mfa_authenticate": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),  # no sign-in under way
    "mfa_reauthenticate": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),
    "mfa_activate_totp": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),
    "mfa_deactivate_totp": ("GET", {}, None, expect(302, 404, 404, 404, 404, 404)),
    "mfa_view_recovery_codes": ("GET", {}, None, expect(302, 404, 404, 404, 404, 404)),
    "mfa_generate_recovery_codes": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),
    "mfa_download_recovery_codes": ("GET", {}, None, expect(302, 404, 404, 404, 404, 404)),
    "mfa_list_webauthn": ("GET", {}, None, PAGE),
    "mfa_add_webauthn": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),
    "mfa_reauthenticate_webauthn": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),
    "mfa_remove_webauthn": ("POST", {"pk": "1"}, {}, expect(302, 302, 302, 302, 302, 302)),
    "mfa_edit_webauthn": ("GET", {"pk": "1"}, None, expect(302, 302, 302, 302, 302, 302)),
    # Single sign-on is not configured in these tests: its provider's pages do not exist.
    "openid_connect_login": ("GET", {"provider_id": "sso"}, None, expect(404, 404, 404, 404, 404, 404)),
    "openid_connect_callback": ("GET", {"provider_id": "sso"}, None, expect(404, 404, 404, 404, 404, 404)),
    "socialaccount_connections": ("GET", {}, None, PAGE),
    "socialaccount_login_cancelled": ("GET", {}, None, expect(200, 200, 200, 200, 200, 200)),
    "socialaccount_login_error": ("GET", {}, None, expect(401, 401, 401, 401, 401, 401)),
    "socialaccount_signup": ("GET", {}, None, expect(302, 302, 302, 302, 302, 302)),  # no SSO sign-up pending
    "project": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "gallery": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "project-settings": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    # Deleting a project: leads and admins, once they type its name (400 without it).
    "project-delete": ("POST", {"slug": "poster"}, {}, expect(302, 404, 403, 403, 400, 400)),
    # Styles: members see them; leads and admins create, edit and delete (400 for the empty forms).
    "project-styles": ("GET", {"slug": "poster"}, None, PROJECT_PAGE),
    "style": ("GET", {"style_id": "{style}"}, None, PROJECT_PAGE),
    "style-delete": ("POST", {"style_id": "{style}"}, {}, expect(302, 404, 403, 403, 302, 302)),
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
    "asset-control-map": ("GET", {"asset_id": "{asset}", "unit": "0"}, None, PROJECT_PAGE),
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
    "api-project": ("DELETE", {"slug": "poster"}, None, expect(401, 404, 403, 403, 400, 400)),
    "api-project-members": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 403, 400, 400)),
    "api-project-member": (
        "PATCH",
        {"slug": "poster", "username": "bob"},
        {"role": "boss"},
        expect(401, 404, 403, 403, 400, 400),
    ),
    "api-project-jobs": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 400, 400, 400)),
    "api-project-assets": ("GET", {"slug": "poster"}, None, API_MEMBER),
    "api-project-styles": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 403, 400, 400)),
    "api-style": ("GET", {"id": "{style}"}, None, API_MEMBER),
    "api-style-copy": ("POST", {"id": "{style}"}, {}, expect(401, 404, 403, 403, 400, 400)),
    "api-project-export": ("GET", {"slug": "poster"}, None, expect(401, 404, 403, 403, 200, 200)),
    # Uploads: artists, leads and admins (400 for the body without a file), viewers may not.
    "api-project-uploads": ("POST", {"slug": "poster"}, {}, expect(401, 404, 403, 400, 400, 400)),
    "api-project-quota": ("PUT", {"slug": "poster"}, {"images": -1}, expect(401, 404, 403, 403, 403, 400)),
    "api-job": ("GET", {"id": "{job}"}, None, API_MEMBER),
    "api-job-cancel": ("POST", {"id": "{job}"}, {}, expect(401, 404, 403, 202, 202, 202)),
    "api-asset": ("GET", {"id": "{asset}"}, None, API_MEMBER),
    "api-asset-image": ("GET", {"id": "{asset}"}, None, API_MEMBER),
    "api-asset-thumbnail": ("GET", {"id": "{asset}"}, None, API_MEMBER),
    "api-asset-mask": ("GET", {"id": "{asset}"}, None, API_MEMBER),
    "api-asset-control-map": ("GET", {"id": "{asset}", "unit": "0"}, None, API_MEMBER),
    # The asset is Bob's draft: Bob (its author), leads and admins may submit it; a decision needs a
    # submitted asset and a decision, so leads get 400 for the empty body.
    "api-asset-review": ("POST", {"id": "{asset}"}, {}, expect(401, 404, 403, 403, 400, 400)),
    "api-asset-submit": ("POST", {"id": "{asset}"}, {}, expect(401, 404, 403, 200, 200, 200)),
    "api-asset-reviews": ("GET", {"id": "{asset}"}, None, API_MEMBER),
    "api-project-boards": ("POST", {"slug": "poster"}, {"name": ""}, expect(401, 404, 403, 400, 400, 400)),
    "api-board": ("GET", {"id": "{board}"}, None, API_MEMBER),
    "api-board-items": ("POST", {"id": "{board}"}, {}, expect(401, 404, 403, 400, 400, 400)),
    "api-asset-tags": ("POST", {"id": "{asset}"}, {"tag": ""}, expect(401, 404, 403, 400, 400, 400)),
    "api-asset-favourite": ("POST", {"id": "{asset}"}, None, API_MEMBER),
    "api-asset-comments": (
        "POST",
        {"id": "{asset}"},
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
    "api-admin-workers": ("GET", {}, None, API_ADMIN),
    "api-admin-annotators": ("GET", {}, None, API_ADMIN),
    "api-admin-annotator": (
        "DELETE",
        {"annotator_id": "not-installed"},
        None,
        expect(401, 404, 404, 404, 404, 404),
    ),
    "api-not-found": ("GET", {"path": "v1/nothing"}, None, expect(404, 404, 404, 404, 404, 404)),
    "api-root": ("GET", {}, None, expect(404, 404, 404, 404, 404, 404)),
    # The AUTOMATIC1111 API takes API tokens only (tests/unit/test_sdapi.py walks it with tokens): a browser
    # session, whoever's, is not a credential there.
    **{
        name: (method, {}, body, SESSION_REFUSED)
        for name, method, body in [
            ("sdapi-txt2img", "POST", {"prompt": "x"}),
            ("sdapi-img2img", "POST", {}),
            ("sdapi-progress", "GET", None),
            ("sdapi-interrupt", "POST", {}),
            ("sdapi-skip", "POST", {}),
            ("sdapi-sd-models", "GET", None),
            ("sdapi-samplers", "GET", None),
            ("sdapi-schedulers", "GET", None),
            ("sdapi-upscalers", "GET", None),
            ("sdapi-loras", "GET", None),
            ("sdapi-options", "GET", None),
            ("sdapi-png-info", "POST", {}),
            ("sdapi-memory", "GET", None),
            ("sdapi-scripts", "GET", None),
            ("sdapi-sd-vae", "GET", None),
            ("sdapi-prompt-styles", "GET", None),
            ("sdapi-refresh", "POST", {}),
            ("sdapi-openapi", "GET", None),
        ]
    },
    "sdapi-not-served": ("GET", {"path": "v1/interrogate"}, None, expect(404, 404, 404, 404, 404, 404)),
    "healthz": ("GET", {}, None, expect(200, 200, 200, 200, 200, 200)),
    "readyz": ("GET", {}, None, expect(503, 503, 503, 503, 503, 503)),  # no broker or worker in unit tests
    # The test client connects from 127.0.0.1, one of STUDIO_METRICS_ALLOW's networks
    # (tests/unit/test_metrics.py covers the refusals).
    "metrics": ("GET", {}, None, expect(200, 200, 200, 200, 200, 200)),
    "admin-check": ("GET", {}, None, expect(403, 403, 403, 403, 403, 204)),
}

WEBSOCKETS = {
    "ws-job": ({"job_id": "{job}"}, expect(403, 403, 101, 101, 101, 101)),
    "ws-project": ({"slug": "poster"}, expect(403, 403, 101, 101, 101, 101)),
    "ws-workers": ({}, expect(403, 403, 403, 403, 403, 101)),
}


def http_patterns() -> dict[str, str]:
    """name → route of every HTTP URL the studio defines (Django's own admin site excepted: it is off unless
    turned on, read-only when on, and checked as a whole in test_admin_site.py)."""

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
    data = json.dumps(body) if body is not None and name.startswith(("api", "sdapi")) else body
    send = getattr(client, method.lower())
    if method == "GET":
        response = send(path)
    elif name.startswith(("api", "sdapi")):
        response = send(path, data=data, content_type="application/json")
    else:
        response = send(path, data=data or {})
    assert response.status_code == expected[role], f"{method} {path} as {role}"
    if expected[role] == 302 and role == "anonymous" and name not in ("account_logout", "manage"):
        assert response["Location"].startswith("/accounts/login/")


# URLs that answer more than one method: the other methods, checked the same way.
# (name, method) → (URL kwargs, body, expected status per role)
MORE_METHODS: dict[tuple[str, str], tuple[dict[str, str], Any, dict[str, int]]] = {
    ("api-asset", "DELETE"): ({"id": "{asset}"}, None, expect(401, 404, 403, 403, 204, 204)),
    ("api-asset-comments", "GET"): ({"id": "{asset}"}, None, API_MEMBER),
    ("api-project-boards", "GET"): ({"slug": "poster"}, None, API_MEMBER),
    ("api-board", "DELETE"): ({"id": "{board}"}, None, expect(401, 404, 403, 403, 204, 204)),
    ("api-board-items", "DELETE"): ({"id": "{board}"}, {}, expect(401, 404, 403, 400, 400, 400)),
    ("api-asset-tags", "DELETE"): (
        {"id": "{asset}"},
        {"tag": ""},
        expect(401, 404, 403, 400, 400, 400),
    ),
    ("api-asset-favourite", "DELETE"): ({"id": "{asset}"}, None, API_MEMBER),
    ("api-project-styles", "GET"): ({"slug": "poster"}, None, API_MEMBER),
    ("api-style", "PATCH"): ({"id": "{style}"}, {"locks": ["seed"]}, expect(401, 404, 403, 403, 400, 400)),
    ("api-style", "DELETE"): ({"id": "{style}"}, None, expect(401, 404, 403, 403, 204, 204)),
    ("project-styles", "POST"): ({"slug": "poster"}, {}, expect(302, 404, 403, 403, 400, 400)),
    ("style", "POST"): ({"style_id": "{style}"}, {"x": 1}, expect(302, 404, 403, 403, 400, 400)),
    # An install with an empty form: the form again with its errors, for admins only.
    ("manage-models", "POST"): ({}, {}, expect(302, 404, 404, 404, 404, 400)),
    # An annotator install without a path: 400 for admins only.
    ("api-admin-annotators", "POST"): ({}, {}, expect(401, 404, 404, 404, 404, 400)),
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
def test_djangos_admin_site_is_off_by_default(client, world, role):
    team, _ = world
    if role != "anonymous":
        client.force_login(team[WHO[role]])
    assert client.get("/admin/").status_code == 404
