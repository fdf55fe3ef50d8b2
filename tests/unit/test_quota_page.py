"""The admin's quota page."""

from __future__ import annotations

import pytest

from studio.models import AuditEvent, QuotaLimit, QuotaScope

pytestmark = pytest.mark.django_db


def test_only_admins_see_the_quota_page(client, team):
    for who in ("alice", "bob", "vera", "charlie"):
        client.force_login(team[who])
        assert client.get("/manage/quotas/").status_code == 404
    client.logout()
    assert client.get("/manage/quotas/").status_code == 302


def test_an_admin_sets_defaults_and_overrides_and_clears_them(client, team):
    client.force_login(team["root"])
    assert client.get("/manage/quotas/").status_code == 200
    response = client.post("/manage/quotas/", {"form": "user_default", "images": "100", "gpu_seconds": ""})
    assert response.status_code == 302
    default = QuotaLimit.objects.get(scope=QuotaScope.USER_DEFAULT)
    assert (default.images, default.gpu_seconds) == (100, None)
    client.post("/manage/quotas/", {"form": "user", "username": "bob", "images": "5", "gpu_seconds": "60"})
    override = QuotaLimit.objects.get(scope=QuotaScope.USER, user=team["bob"])
    assert (override.images, override.gpu_seconds) == (5, 60)
    client.post(
        "/manage/quotas/", {"form": "project", "project": "poster", "images": "", "gpu_seconds": "600"}
    )
    page = client.get("/manage/quotas/").content.decode()
    assert "user bob" in page
    assert "project Poster" in page
    client.post("/manage/quotas/", {"form": "clear", "limit_id": str(override.id)})
    assert not QuotaLimit.objects.filter(pk=override.pk).exists()
    assert AuditEvent.objects.filter(action="quota.change").count() == 4


def test_bad_input_is_shown_on_the_page_and_nothing_changes(client, team):
    client.force_login(team["root"])
    response = client.post("/manage/quotas/", {"form": "user", "username": "bob", "images": "-3"})
    assert response.status_code == 400
    assert "images" in response.content.decode()
    response = client.post("/manage/quotas/", {"form": "user", "username": "nobody", "images": "3"})
    assert "No user has that name." in response.content.decode()
    response = client.post("/manage/quotas/", {"form": "clear", "limit_id": "abc"})
    assert response.status_code == 400
    assert not QuotaLimit.objects.exists()


def test_a_bad_default_is_shown_under_its_own_form(client, team):
    client.force_login(team["root"])
    response = client.post("/manage/quotas/", {"form": "project_default", "images": "lots"})
    assert response.status_code == 400
    page = response.content.decode()
    form = page.split('id="form-project_default"')[1].split("</form>")[0]
    assert "Enter a whole number of at least 0, or null for unlimited." in form
