"""What keeps a job alive through faults: a lost queue is sent again, a lost worker's job is queued again
with a notice for the people watching, an unreachable cache never fails a job, and a database restart is
waited out."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from generation import services, worker
from generation.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: sent.append(str(job_id)))
    cache.clear()
    return sent


def queued_job(team) -> Job:
    return Job.objects.create(
        project=team["project"],
        created_by=team["bob"],
        model_id="demo",
        queue="gpu",
        params=factories.job_params(prompt="x"),
    )


def test_when_redis_lost_its_data_every_queued_job_is_sent_again_at_once(team, sent):
    services.do_sweep_stale_jobs()  # the first sweep sets the mark (and sends what waits: harmless)
    sent.clear()
    jobs = [queued_job(team) for _ in range(3)]
    assert services.do_sweep_stale_jobs()["resent"] == 0, (
        "fresh jobs are not sent twice while Redis keeps them"
    )
    cache.clear()  # what a restart of a Redis without persistence does
    assert services.do_sweep_stale_jobs()["resent"] == 3
    assert sorted(sent) == sorted(str(j.id) for j in jobs)
    for job in jobs:
        job.refresh_from_db()
        assert job.notice == services.QUEUE_LOST
    assert services.do_sweep_stale_jobs()["resent"] == 0, "once the mark is back, nothing more"


def test_a_job_waiting_on_a_queue_that_holds_no_message_is_sent_again(team, sent, settings, monkeypatch):
    """A worker that took a message and lost it with its connection leaves its job queued with no message
    anywhere: once the job has waited a heartbeat's grace and the broker says the queue is empty, it is
    sent again (long before the long-wait resend)."""
    services.do_sweep_stale_jobs()  # the mark
    sent.clear()
    waiting = {"gpu": 0}
    monkeypatch.setattr(services, "messages_waiting", lambda queue: waiting[queue])
    fresh, stranded = queued_job(team), queued_job(team)
    Job.objects.filter(id=stranded.id).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.STUDIO_JOB_STALE_SECONDS + 1)
    )
    waiting["gpu"] = 1
    assert services.do_sweep_stale_jobs()["resent"] == 0, "the queue still holds a message for it"
    waiting["gpu"] = None
    assert services.do_sweep_stale_jobs()["resent"] == 0, "a broker that cannot be asked proves nothing"
    waiting["gpu"] = 0
    assert services.do_sweep_stale_jobs()["resent"] == 1
    assert sent == [str(stranded.id)], "a job queued a moment ago still has its message on its way"
    stranded.refresh_from_db()
    assert stranded.status == "queued" and stranded.notice == ""
    assert services.do_sweep_stale_jobs()["resent"] == 0, "not again until it has waited again"
    assert fresh.id not in sent


def test_the_broker_says_how_many_messages_wait_on_a_queue(monkeypatch):
    from celery import current_app
    from kombu import Connection, Queue

    name = f"count-{uuid.uuid4().hex}"
    assert services.messages_waiting(name) == 0, "a queue nobody declared holds nothing"
    with current_app.connection_for_write() as connection:
        producer = connection.Producer()
        for _ in range(2):
            producer.publish({"n": 1}, routing_key=name, declare=[Queue(name)])
    assert services.messages_waiting(name) == 2
    monkeypatch.setattr(current_app, "connection_for_read", lambda: Connection("redis://127.0.0.1:1/0"))
    assert services.messages_waiting(name) is None, "a broker that is away answers nothing, quickly"


def test_a_lost_workers_job_is_queued_again_and_its_page_says_so(team, sent, settings):
    job = queued_job(team)
    Job.objects.filter(id=job.id).update(
        status="running",
        attempt=1,
        worker="gpu0@dead",
        progress_step=7,
        progress_total=20,
        heartbeat_at=timezone.now() - timedelta(seconds=settings.STUDIO_JOB_STALE_SECONDS + 5),
    )
    assert services.do_sweep_stale_jobs()["requeued"] == 1
    job.refresh_from_db()
    assert job.status == "queued"
    expected = "Its worker stopped at step 7 of 20; the job was queued again (attempt 2 of 3)."
    assert job.notice == expected
    client = Client()
    client.force_login(team["bob"])
    assert client.get(f"/api/v1/jobs/{job.id}").json()["notice"] == expected
    page = client.get(f"/jobs/{job.id}/").content.decode()
    assert expected in page
    assert 'id="live-connection"' in page


def test_an_unreachable_cache_never_fails_a_step(team, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "add", down)
    assert services.cancel_requested_fast("any") is False
    assert services.broker_lost_its_queue() is False, "nothing to resend to while Redis is away"


def test_a_database_restart_is_waited_out_and_a_lasting_outage_is_given_up(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(worker.time, "sleep", lambda seconds: None)

    def flaky(value):
        calls.append(value)
        if len(calls) < 3:
            raise OperationalError("the database system is shutting down")
        return value * 2

    assert worker.with_database(flaky, 21) == 42
    assert len(calls) == 3

    monkeypatch.setattr(worker, "DATABASE_PATIENCE", 0.0)

    def down():
        raise OperationalError("connection refused")

    with pytest.raises(OperationalError):
        worker.with_database(down)
