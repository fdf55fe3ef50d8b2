"""Retention: Alice keeps the Poster project's drafts and rejected images for 30 days; the daily purge takes
older ones with their files, never an approved image, and says what it did in the audit log."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.utils import timezone

from gallery.models import Asset, AssetStatus
from gallery.tasks import purge_expired_assets
from studio.models import AuditEvent, Project
from tests import factories
from tests.unit.test_exports import make_job_assets

pytestmark = pytest.mark.django_db


def aged(asset: Asset, days: int, status: str) -> Asset:
    Asset.objects.filter(id=asset.id).update(
        status=status, created_at=timezone.now() - dt.timedelta(days=days)
    )
    return asset


def test_a_lead_sets_the_retention_on_the_settings_page(client, team):
    client.force_login(team["alice"])
    response = client.post(
        "/p/poster/settings/", {"action": "retention", "retention_days": "30"}, follow=True
    )
    assert "deletes drafts and rejected images after 30 days" in response.content.decode()
    assert Project.objects.get(slug="poster").retention_days == 30
    event = AuditEvent.objects.get(action="project.retention_change")
    assert event.details == {"from": None, "to": 30} and event.actor_name == "alice"
    for bad in ("thirty", "0", "99999"):
        response = client.post("/p/poster/settings/", {"action": "retention", "retention_days": bad})
        assert response.status_code == 400
        assert 'id="retention-error"' in response.content.decode()
    assert Project.objects.get(slug="poster").retention_days == 30
    client.post("/p/poster/settings/", {"action": "retention", "retention_days": ""})
    assert Project.objects.get(slug="poster").retention_days is None
    client.force_login(team["bob"])
    response = client.post("/p/poster/settings/", {"action": "retention", "retention_days": "1"})
    assert response.status_code == 403
    assert 'id="retention-form"' not in client.get("/p/poster/settings/").content.decode()


def test_old_drafts_and_rejected_images_go_with_their_files_and_approved_ones_stay(
    team, django_capture_on_commit_callbacks
):
    Project.objects.filter(slug="poster").update(retention_days=30)
    old_draft, old_rejected, old_approved, old_submitted, new_draft = make_job_assets(
        team["project"], team["bob"], 5
    )
    aged(old_draft, 31, AssetStatus.DRAFT)
    aged(old_rejected, 45, AssetStatus.REJECTED)
    aged(old_approved, 400, AssetStatus.APPROVED)
    aged(old_submitted, 60, AssetStatus.SUBMITTED)
    aged(new_draft, 29, AssetStatus.DRAFT)
    elsewhere = factories.project(team["charlie"], name="Keep")  # no retention: keeps everything
    [kept] = make_job_assets(elsewhere, team["charlie"])
    aged(kept, 900, AssetStatus.DRAFT)
    gone_files = [old_draft.file.name, old_draft.thumbnail.name, old_rejected.file.name]

    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_assets() == 1

    remaining = set(Asset.objects.values_list("id", flat=True))
    assert remaining == {old_approved.id, old_submitted.id, new_draft.id, kept.id}
    assert not any(default_storage.exists(name) for name in gone_files)
    assert default_storage.exists(old_approved.file.name) and default_storage.exists(kept.file.name)
    event = AuditEvent.objects.get(action="asset.purge")
    assert event.project_slug == "poster" and event.actor is None
    assert event.details == {"days": 30, "drafts": 1, "rejected": 1, "files": 4}
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_assets() == 0  # nothing more is due
    assert AuditEvent.objects.filter(action="asset.purge").count() == 1


def test_the_purge_runs_daily_on_the_maintenance_queue():
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-expired-assets"]
    assert entry["task"] == "gallery.tasks.purge_expired_assets"
    assert entry["schedule"].hour == {django_settings.STUDIO_RETENTION_HOUR}
    assert django_settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": "maintenance"}
