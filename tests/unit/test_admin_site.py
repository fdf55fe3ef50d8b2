"""Django's admin site: off by default (test_url_matrix), and read-only when turned on, so nothing goes
around the services. Three holes that were once open stay shut: a revoked token cannot be un-revoked or
given to someone else, nobody is made superuser there, and no project is deleted there."""

from __future__ import annotations

import importlib

import pytest
from django.test import Client
from django.urls import clear_url_caches

from studio import audit
from studio.models import ApiToken, AuditEvent, Project, User
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_site(settings):
    import studio.urls

    settings.STUDIO_DJANGO_ADMIN = True
    importlib.reload(studio.urls)
    clear_url_caches()
    yield
    settings.STUDIO_DJANGO_ADMIN = False
    importlib.reload(studio.urls)
    clear_url_caches()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_only_site_admins_enter_and_sign_in_is_the_studios(team, admin_site):
    assert signed_in(team["root"]).get("/admin/").status_code == 200
    assert signed_in(team["bob"]).get("/admin/", follow=True).status_code == 403
    response = Client().get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    # The admin's own sign-in form is replaced by the studio's (throttle, SSO only, MFA).
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_revoked_token_cannot_be_revived_or_given_away(team, admin_site):
    token = factories.token(team["bob"])
    row = ApiToken.objects.get(user=team["bob"])
    ApiToken.objects.filter(pk=row.pk).update(revoked_at="2026-01-01T00:00:00Z")
    root = signed_in(team["root"])
    page = root.get(f"/admin/studio/apitoken/{row.pk}/change/")
    assert page.status_code == 200  # a view-only page
    assert row.digest.encode() not in page.content
    response = root.post(
        f"/admin/studio/apitoken/{row.pk}/change/",
        {"user": team["root"].pk, "name": "mine now", "revoked_at_0": "", "revoked_at_1": ""},
    )
    assert response.status_code == 403
    row.refresh_from_db()
    assert (row.user, row.revoked_at is not None) == (team["bob"], True)
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_nobody_is_made_superuser_there(team, admin_site):
    root = signed_in(team["root"])
    assert root.get(f"/admin/studio/user/{team['bob'].pk}/change/").status_code == 200
    response = root.post(
        f"/admin/studio/user/{team['bob'].pk}/change/", {"username": "bob", "is_superuser": "on"}
    )
    assert response.status_code == 403
    assert not User.objects.get(username="bob").is_superuser
    assert root.get("/admin/studio/user/add/").status_code == 403


def test_no_project_is_deleted_there(team, admin_site):
    root = signed_in(team["root"])
    project = team["project"]
    assert root.get(f"/admin/studio/project/{project.pk}/delete/").status_code == 403
    assert root.post(f"/admin/studio/project/{project.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = root.post(
        "/admin/studio/project/",
        {"action": "delete_selected", "_selected_action": [project.pk], "post": "yes"},
    )
    assert listing.status_code in (200, 302)
    assert Project.objects.filter(pk=project.pk).exists()


def test_audit_events_and_mfa_secrets_are_shown_read_only(team, admin_site):
    event = audit.record(team["alice"], audit.MEMBER_ADD, target="user:bob")
    root = signed_in(team["root"])
    assert root.get(f"/admin/studio/auditevent/{event.pk}/change/").status_code == 200
    assert root.post(f"/admin/studio/auditevent/{event.pk}/change/", {"target": "x"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).target == "user:bob"
    from allauth.mfa.models import Authenticator

    totp = Authenticator.objects.create(
        user=team["root"], type=Authenticator.Type.TOTP, data={"secret": "SECRETSEED"}
    )
    page = root.get(f"/admin/mfa/authenticator/{totp.pk}/change/")
    assert page.status_code == 200 and b"SECRETSEED" not in page.content
