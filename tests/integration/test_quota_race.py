"""Fifty simultaneous submits against a quota with room for one: exactly one is accepted (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from generation import services
from generation.models import Job
from studio import quotas
from studio.errors import QuotaExceeded
from studio.models import QuotaScope, QuotaUsage
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_fifty_concurrent_submits_with_room_for_one(monkeypatch, demo_model_dir):
    assert connection.vendor == "postgresql"
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    admin, artist = factories.user("root", admin=True), factories.user("bob")
    project = factories.project(artist)
    quotas.do_set_limits(admin, QuotaScope.USER, {"images": 3}, user=artist)
    # Two images already made this period: the usage row exists, so only the row lock orders the submits.
    QuotaUsage.objects.create(
        subject="user", subject_id=artist.pk, period_start=quotas.period_bounds()[0], images_used=2
    )

    barrier = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            barrier.wait()
            services.do_create_job(artist, project, {"prompt": "a red circle"})
            result = "accepted"
        except QuotaExceeded:
            result = "refused"
        except Exception as exc:  # reported below, so a deadlock or a crash fails the test visibly
            result = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sorted(set(outcomes)) == ["accepted", "refused"], outcomes
    assert outcomes.count("accepted") == 1
    assert outcomes.count("refused") == 49
    assert Job.objects.count() == 1
    row = QuotaUsage.objects.get(subject="user", subject_id=artist.pk)
    assert row.images_reserved == 1
    assert row.images_used == 2


def test_twenty_concurrent_submits_against_a_queue_limit_of_three(monkeypatch, demo_model_dir, settings):
    """With no quota at all, the per-person limit on queued jobs still holds under concurrency."""
    assert connection.vendor == "postgresql"
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    settings.STUDIO_MAX_QUEUED_JOBS = 3
    artist = factories.user("bob")
    project = factories.project(artist)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            barrier.wait()
            services.do_create_job(artist, project, {"prompt": "a red circle"})
            result = "accepted"
        except QuotaExceeded:
            result = "refused"
        except Exception as exc:
            result = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["accepted"] * 3 + ["refused"] * 17, outcomes
    assert Job.objects.count() == 3
