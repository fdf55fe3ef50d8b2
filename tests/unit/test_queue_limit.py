"""One person cannot flood the GPUs: past STUDIO_MAX_QUEUED_JOBS jobs waiting or running, a submit is refused
with a 429 that says why and what to do, and a finished or canceled job makes room again."""

from __future__ import annotations

import json

import pytest

from generation import services
from generation.models import Job
from studio.models import QuotaUsage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quiet(monkeypatch, demo_model_dir, settings):
    monkeypatch.setattr("generation.services.enqueue", lambda job_id, queue: None)
    settings.STUDIO_MAX_QUEUED_JOBS = 2


def submit(client):
    return client.post(
        "/api/v1/projects/poster/jobs",
        data=json.dumps({"prompt": "a star", "num_images": 8, "steps": 150}),
        content_type="application/json",
    )


def test_a_submit_past_the_queued_jobs_limit_is_429_and_stores_nothing(client, team):
    client.force_login(team["bob"])
    assert submit(client).status_code == 201
    assert submit(client).status_code == 201
    reserved = sum(QuotaUsage.objects.values_list("images_reserved", flat=True))
    refused = submit(client)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == (
        "You already have 2 jobs waiting or running, the most one person may have at once. "
        "Wait for one to finish, or cancel one, then submit again."
    )
    assert body["queue"] == {"active": 2, "limit": 2}
    assert Job.objects.count() == 2
    assert sum(QuotaUsage.objects.values_list("images_reserved", flat=True)) == reserved


def test_others_are_not_held_up_and_a_canceled_job_makes_room(client, team):
    client.force_login(team["bob"])
    first = submit(client).json()
    submit(client)
    client.force_login(team["alice"])
    assert submit(client).status_code == 201  # the limit is per person
    client.force_login(team["bob"])
    assert submit(client).status_code == 429
    services.do_cancel_job(team["bob"], Job.objects.get(id=first["id"]))
    assert submit(client).status_code == 201


def test_zero_means_no_limit(client, team, settings):
    settings.STUDIO_MAX_QUEUED_JOBS = 0
    client.force_login(team["bob"])
    assert all(submit(client).status_code == 201 for _ in range(3))
