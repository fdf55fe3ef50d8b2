"""API tokens: scopes and their defaults, expiry, last use, the default project, where tokens are accepted
(the API, the AUTOMATIC1111 API, websockets; never pages), and ``manage.py studio_token``.

Alice leads Poster, Bob is its artist; root is a site admin.
"""

from __future__ import annotations

import base64
import importlib
import io
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory
from django.utils import timezone

from studio import audit, services
from studio.auth import BearerTokenMiddleware
from studio.errors import InvalidInput
from studio.models import ApiToken, AuditEvent, User

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_scopes_default_to_generate_or_admin_for_a_site_admin(team):
    bob_row, _ = services.do_create_token(team["bob"], "bob's")
    root_row, _ = services.do_create_token(team["root"], "root's")
    assert (bob_row.scope, root_row.scope) == ("generate", "admin")
    with pytest.raises(InvalidInput) as refused:
        services.do_create_token(team["bob"], "sneaky", scope="admin")
    assert refused.value.errors == {"scope": ["Choose read or generate."]}
    with pytest.raises(InvalidInput):
        services.do_create_token(team["bob"], "odd", scope="everything")


def test_a_read_token_reads_but_does_not_generate(team):
    _, token = services.do_create_token(team["bob"], "dashboard", scope="read")
    client = Client()
    assert client.get("/api/v1/projects/poster/assets", **bearer(token)).status_code == 200
    response = client.post(
        "/api/v1/projects/poster/jobs", data={"prompt": "x"}, content_type="application/json", **bearer(token)
    )
    assert response.status_code == 403
    assert "needs a token with the generate scope" in response.json()["error"]


def test_the_admin_api_needs_an_admin_token(team):
    _, generate = services.do_create_token(team["root"], "farm", scope="generate")
    _, admin = services.do_create_token(team["root"], "ops", scope="admin")
    client = Client()
    refused = client.get("/api/v1/admin/users", **bearer(generate))
    assert refused.status_code == 403 and "needs a token with the admin scope" in refused.json()["error"]
    assert client.get("/api/v1/admin/users", **bearer(admin)).status_code == 200
    # Someone who is no admin is told the admin API does not exist, whatever their token.
    _, bobs = services.do_create_token(team["bob"], "bob's")
    assert client.get("/api/v1/admin/users", **bearer(bobs)).status_code == 404


def test_an_admin_token_never_acts_on_pages(team):
    """An attack that once worked: an admin's token made a superuser through the admin page, without CSRF."""
    _, token = services.do_create_token(team["root"], "ops")
    script = Client(enforce_csrf_checks=True)
    response = script.post(
        "/manage/users/new/",
        {"username": "mallory", "password": "a long passphrase 9", "is_admin": "on"},
        **bearer(token),
    )
    assert response.status_code == 403  # no session, no CSRF token: refused before any view
    assert not User.objects.filter(username="mallory").exists()
    page = Client().get("/manage/users/", **bearer(token))
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")


def test_an_expired_token_is_refused_and_shown_as_expired(team):
    row, token = services.do_create_token(team["alice"], "short-lived", expires_in_days=7)
    assert timedelta(days=6, hours=23) < row.expires_at - timezone.now() <= timedelta(days=7)
    assert Client().get("/api/v1/me", **bearer(token)).status_code == 200
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    response = Client().get("/api/v1/me", **bearer(token))
    assert response.status_code == 401
    assert "“short-lived” expired on" in response.json()["error"]
    page = signed_in(team["alice"]).get("/account/").content.decode()
    assert "expired" in page
    with pytest.raises(InvalidInput):
        services.do_create_token(team["alice"], "forever and a day", expires_in_days=100000)


def test_the_account_page_makes_a_scoped_expiring_token_with_a_default_project(team):
    alice = signed_in(team["alice"])
    page = alice.get("/account/").content.decode()
    assert 'name="scope"' in page and 'value="admin"' not in page  # Alice is no site admin
    assert '<option value="poster">Poster</option>' in page
    response = alice.post(
        "/account/tokens/", {"name": "farm", "scope": "read", "expires": "30", "project": "poster"}
    )
    assert response.status_code == 200
    row = ApiToken.objects.get(name="farm")
    assert (row.scope, row.default_project, row.expires_at is not None) == ("read", team["project"], True)
    [event] = AuditEvent.objects.filter(action=audit.TOKEN_CREATE)
    assert event.details["scope"] == "read" and event.project == team["project"]

    # A project she cannot see is refused, and the form keeps what she chose.
    response = alice.post("/account/tokens/", {"name": "x", "scope": "read", "project": "secret"})
    assert response.status_code == 400 and b"No such project." in response.content
    assert b'<option value="read" selected>' in response.content
    assert signed_in(team["root"]).get("/account/").content.count(b'value="admin" selected') == 1


def test_the_last_use_is_shown_on_the_account_page(team):
    row, token = services.do_create_token(team["alice"], "sync")
    page = signed_in(team["alice"]).get("/account/").content.decode()
    assert page.count('<span class="muted">never</span>') == 2  # expires never, never used
    Client().get("/api/v1/me", **bearer(token))
    row.refresh_from_db()
    assert row.last_used_at is not None
    page = signed_in(team["alice"]).get("/account/").content.decode()
    assert page.count('<span class="muted">never</span>') == 1
    assert f'datetime="{row.last_used_at.isoformat()}"' in page


def test_the_request_carries_the_token_row_for_finer_checks(team):
    row, token = services.do_create_token(team["bob"], "a1111", default_project="poster")
    seen = {}

    def view(request):
        seen["token"], seen["user"] = request.api_token, getattr(request, "user", None)
        return None

    BearerTokenMiddleware(view)(RequestFactory().get("/sdapi/v1/sd-models", **bearer(token)))
    assert seen["token"].pk == row.pk and seen["token"].default_project == team["project"]
    assert seen["user"] == team["bob"]
    BearerTokenMiddleware(view)(RequestFactory().get("/", **bearer(token)))
    assert seen["token"] is None  # pages: no token


def basic(username: str, secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def test_the_automatic1111_api_takes_http_basic_with_a_token_never_a_password(team):
    _, token = services.do_create_token(team["bob"], "webui")
    seen = {}

    def view(request):
        seen["user"] = request.user
        return None

    middleware = BearerTokenMiddleware(view)
    assert middleware(RequestFactory().get("/sdapi/v1/sd-models", **basic("bob", token))) is None
    assert seen["user"] == team["bob"]
    for refused in (
        basic("bob", "correct horse battery"),
        basic("alice", token),
        {"HTTP_AUTHORIZATION": "Basic !!"},
    ):
        response = middleware(RequestFactory().get("/sdapi/v1/sd-models", **refused))
        assert response.status_code == 401, refused
        assert response["WWW-Authenticate"] == 'Basic realm="studio"'
    # HTTP Basic is for the A1111 API only.
    assert middleware(RequestFactory().get("/api/v1/me", **basic("bob", token))).status_code == 401


def test_tokens_made_before_scopes_keep_what_they_could_do(team):
    """The migration gives an admin's old tokens the admin scope (others keep generate)."""
    services.do_create_token(team["root"], "old", scope="generate")
    services.do_create_token(team["bob"], "old", scope="generate")
    migration = importlib.import_module("studio.migrations.0006_api_token_scope_expiry_default_project")
    migration.admins_keep_admin_tokens(apps, None)
    assert dict(ApiToken.objects.values_list("user__username", "scope")) == {
        "root": "admin",
        "bob": "generate",
    }


def test_studio_token_takes_a_scope_a_project_and_an_expiry(team):
    out = io.StringIO()
    call_command(
        "studio_token", "alice", "--scope", "read", "--project", "poster", "--expires-days", "30", stdout=out
    )
    token = out.getvalue().strip()
    row = ApiToken.objects.get(user=team["alice"])
    assert (row.scope, row.default_project.slug, row.expires_at is not None) == ("read", "poster", True)
    assert Client().get("/api/v1/me", **bearer(token)).status_code == 200
    call_command("studio_token", "root", stdout=io.StringIO())
    assert ApiToken.objects.get(user=team["root"]).scope == "admin"
    with pytest.raises(CommandError, match="Only site admins can create admin tokens"):
        call_command("studio_token", "bob", "--scope", "admin", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No such project"):
        call_command("studio_token", "bob", "--project", "elsewhere", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_websockets_refuse_an_expired_or_revoked_token(team):
    import asyncio

    from channels.testing import WebsocketCommunicator

    from studio.asgi import application

    row, token = services.do_create_token(team["alice"], "watcher")

    async def attempt() -> bool:
        headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]
        ws = WebsocketCommunicator(application, "/ws/projects/poster/", headers=headers)
        connected, _ = await ws.connect()
        if connected:
            await ws.disconnect()
        return connected

    assert asyncio.run(attempt())
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now())
    assert not asyncio.run(attempt())
    ApiToken.objects.filter(pk=row.pk).update(expires_at=None)
    services.do_revoke_token(team["alice"], row.pk)
    assert not asyncio.run(attempt())


def test_the_sign_in_page_offers_single_sign_on_beside_the_password(team, settings):
    settings.STUDIO_OIDC_ISSUER = "https://idp.studio.test"
    settings.STUDIO_OIDC_NAME = "Acme ID"
    page = Client().get("/accounts/login/?next=/p/poster/").content.decode()
    assert '<form method="post" action="/accounts/oidc/sso/login/" class="stack sso-form">' in page
    assert "Sign in with Acme ID" in page and 'name="password"' in page
    assert '<input type="hidden" name="next" value="/p/poster/">' in page
