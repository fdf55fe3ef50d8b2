"""Quotas: reserve at submit, settle at completion, release on failure or cancel; refusals say why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from generation import services
from generation.models import Job
from studio import quotas
from studio.models import AuditEvent, QuotaScope, QuotaUsage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quiet(monkeypatch, demo_model_dir):
    monkeypatch.setattr("generation.services.enqueue", lambda job_id, queue: None)


def submit(client, n=1):
    return client.post(
        "/api/v1/projects/poster/jobs",
        data=json.dumps({"prompt": "a star", "num_images": n}),
        content_type="application/json",
    )


def set_limit(team, scope, body, **subject):
    return quotas.do_set_limits(team["root"], scope, body, **subject)


def test_unlimited_by_default_and_usage_is_still_counted(client, team):
    client.force_login(team["bob"])
    assert submit(client, 3).status_code == 201
    job = Job.objects.get()
    quotas.settle(job, 3, 12.5)
    data = client.get("/api/v1/me/quota").json()
    assert data["images"] == {"used": 3, "limit": None}
    assert data["gpu_seconds"] == {"used": 12.5, "limit": None}
    assert data["period_start"].startswith(datetime.now(UTC).strftime("%Y-%m-01"))


def test_a_submit_beyond_the_image_quota_is_429_with_used_limit_and_reset(client, team):
    set_limit(team, QuotaScope.USER, {"images": 4}, user=team["bob"])
    client.force_login(team["bob"])
    assert submit(client, 3).status_code == 201
    refused = submit(client, 2)
    assert refused.status_code == 429
    body = refused.json()
    assert "Your monthly image quota is used up: 3 of 4 images used; it resets on" in body["error"]
    assert body["quota"]["used"] == 3
    assert body["quota"]["limit"] == 4
    assert Job.objects.count() == 1  # nothing stored
    assert submit(client, 1).status_code == 201


def test_the_project_quota_applies_to_every_member(client, team):
    set_limit(team, QuotaScope.PROJECT, {"images": 1}, project=team["project"])
    client.force_login(team["bob"])
    assert submit(client).status_code == 201
    client.force_login(team["alice"])
    refused = submit(client)
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("This project's monthly image quota is used up")


def test_site_defaults_apply_until_an_override_says_otherwise(client, team):
    set_limit(team, QuotaScope.USER_DEFAULT, {"images": 0})
    client.force_login(team["bob"])
    assert submit(client).status_code == 429
    set_limit(team, QuotaScope.USER, {"images": None}, user=team["bob"])  # bob: unlimited
    assert submit(client).status_code == 201
    client.force_login(team["alice"])
    assert submit(client).status_code == 429


def test_gpu_time_refuses_once_reached(client, team):
    set_limit(team, QuotaScope.USER, {"gpu_seconds": 10}, user=team["bob"])
    client.force_login(team["bob"])
    assert submit(client).status_code == 201
    quotas.settle(Job.objects.get(), 1, 10.2)
    refused = submit(client)
    assert refused.status_code == 429
    assert "GPU time is used up: 10 of 10 GPU-seconds used" in refused.json()["error"]


def test_failure_and_cancel_release_the_hold(client, team):
    set_limit(team, QuotaScope.USER, {"images": 2}, user=team["bob"])
    client.force_login(team["bob"])
    assert submit(client, 2).status_code == 201
    assert submit(client).status_code == 429
    job = Job.objects.get()
    services.do_cancel_job(team["bob"], job)
    assert submit(client, 2).status_code == 201
    second = Job.objects.filter(status="queued").get()
    attempt = Job.claim(second.id, "w")
    services.do_finish_job(second.id, attempt, "failed", error="boom", gpu_seconds=1.5)
    row = QuotaUsage.objects.get(subject="user", subject_id=team["bob"].pk)
    assert (row.images_reserved, row.images_used, row.gpu_seconds_used) == (0, 0, 1.5)


def test_the_generate_page_says_what_is_left(client, team):
    set_limit(team, QuotaScope.USER, {"images": 10, "gpu_seconds": 600}, user=team["bob"])
    client.force_login(team["bob"])
    submit(client, 3)
    page = client.get("/p/poster/").content.decode()
    assert "You have 7 of 10 images and 600 of 600 GPU-seconds left until" in page


def test_only_admins_set_quotas_and_changes_are_audited(client, team):
    body = json.dumps({"images": 5, "gpu_seconds": None})
    client.force_login(team["alice"])  # a lead, not an admin
    assert (
        client.put("/api/v1/projects/poster/quota", data=body, content_type="application/json").status_code
        == 403
    )
    assert (
        client.put("/api/v1/admin/users/bob/quota", data=body, content_type="application/json").status_code
        == 404
    )
    client.force_login(team["root"])
    response = client.put("/api/v1/admin/users/bob/quota", data=body, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"username": "bob", "images": 5, "gpu_seconds": None}
    response = client.put("/api/v1/projects/poster/quota", data=body, content_type="application/json")
    assert response.json() == {"project": "poster", "images": 5, "gpu_seconds": None}
    bad = client.put(
        "/api/v1/projects/poster/quota",
        data=json.dumps({"images": -1, "extra": 1}),
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"images", "extra"}
    # The quota page says the same sentence for the same mistake: one type decides.
    assert bad.json()["errors"]["images"] == ["Enter a whole number of at least 0, or null for unlimited."]
    page = client.post("/manage/quotas/", {"form": "project", "project": "poster", "images": "-1"})
    assert "Enter a whole number of at least 0, or null for unlimited." in page.content.decode()
    events = AuditEvent.objects.filter(action="quota.change").order_by("time")
    assert [e.target for e in events] == ["user:bob", "project:poster"]
    assert events[0].details["to"] == {"images": 5, "gpu_seconds": None}


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            "month",
            datetime(2026, 12, 15, 10, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "week",
            datetime(2026, 11, 27, 10, tzinfo=UTC),
            datetime(2026, 11, 23, tzinfo=UTC),
            datetime(2026, 11, 30, tzinfo=UTC),
        ),
        (
            "day",
            datetime(2026, 11, 27, 10, tzinfo=UTC),
            datetime(2026, 11, 27, tzinfo=UTC),
            datetime(2026, 11, 28, tzinfo=UTC),
        ),
    ],
)
def test_periods(settings, period, now, start, end):
    settings.STUDIO_QUOTA_PERIOD = period
    assert quotas.period_bounds(now) == (start, end)
