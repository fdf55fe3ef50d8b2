"""Model-aware routing: a job goes to a worker that keeps its model loaded, else to the one that can load it
soonest; a job whose model no live worker has waits and says why; the sweeper moves jobs off workers that
went away."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from generation import fleet, services
from generation.models import Job
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

POOL = "gpu"


@pytest.fixture(autouse=True)
def broker(monkeypatch, settings):
    """Record each message's queue instead of sending it."""
    settings.STUDIO_GPU_QUEUE = POOL
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: sent.append((str(job_id), queue)))
    monkeypatch.setattr(services, "messages_waiting", lambda queue: 1)  # no message is ever lost here
    cache.clear()
    services.broker_lost_its_queue()  # the broker has kept its data since (a first sweep resends all)
    yield sent
    cache.clear()  # the fake workers go with the test: later tests' jobs must not be routed to them


def report(name, *, installed, loaded=(), current=0, free=8e9, pool=POOL, host="host-a"):
    """What a worker process publishes (generation/fleet.py), written as it would be."""
    state = {
        "name": name,
        "host": host,
        "pool": pool,
        "device": "cuda:0 Test GPU",
        "memory_total": 16e9,
        "memory_free": free,
        "installed": list(installed),
        "loaded": list(loaded),
        "current": [
            {"job": str(i), "user": "x", "project": "p", "model": "m", "images": 1} for i in range(current)
        ],
        "jobs_last_hour": 0,
        "images_last_hour": 0,
        "at": time.time(),
    }
    cache.set(fleet.state_key(name), state, 60)
    names = cache.get(fleet.NAMES_KEY) or []
    cache.set(fleet.NAMES_KEY, sorted({*names, name}), None)


def gone(name):
    cache.delete(fleet.state_key(name))  # what its key's lifetime does once the worker stops


def queued_job(team, model_id="demo"):
    return Job.objects.create(
        project=team["project"],
        created_by=team["bob"],
        model_id=model_id,
        queue=POOL,
        params=factories.job_params(),
        progress_total=20,
    )


def test_a_job_goes_to_the_worker_that_keeps_its_model_loaded(team, broker):
    report("gpu0@a", installed=["sdxl", "flux"], loaded=["flux"])
    report("gpu1@b", installed=["sdxl", "flux"], loaded=["sdxl"], current=1)
    job = queued_job(team, "sdxl")
    assert services.do_dispatch(job.id) == "gpu1@b"  # busy, but warm: no model load
    job.refresh_from_db()
    assert job.routed_to == "gpu1@b"
    assert broker == [(str(job.id), "gpu.gpu1@b")]


def test_otherwise_to_the_least_busy_worker_that_has_it_installed(team, broker):
    report("gpu0@a", installed=["sdxl"], loaded=["flux"], current=1)
    report("gpu1@b", installed=["sdxl"], loaded=["flux"])
    report("gpu2@c", installed=["flux"])  # cannot run it at all
    first, second, third = (queued_job(team, "sdxl") for _ in range(3))
    assert services.do_dispatch(first.id) == "gpu1@b"
    assert services.do_dispatch(second.id) == "gpu0@a"  # gpu1 now has one waiting, as gpu0 has one running
    assert services.do_dispatch(third.id) in {"gpu0@a", "gpu1@b"}
    assert all(queue.startswith("gpu.gpu") for _, queue in broker)


def test_with_no_worker_known_a_job_goes_to_the_pool_for_any_worker(team, broker):
    job = queued_job(team)
    assert services.do_dispatch(job.id) == ""
    assert broker == [(str(job.id), POOL)]


def test_a_job_whose_model_no_live_worker_has_waits_and_says_why_until_one_has(team, broker, client):
    report("gpu0@a", installed=["demo"])
    job = queued_job(team, "flux-dev")
    assert services.do_dispatch(job.id) is None
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.notice == services.WAITING_FOR_MODEL.format(model="flux-dev")
    assert broker == [(str(job.id), POOL)]  # for a worker that gains the model; the page says why it waits
    client.force_login(team["bob"])
    page = client.get(f"/jobs/{job.id}/").content.decode()
    assert "No running worker has the model flux-dev installed" in page
    assert "flux-dev installed" in client.get(f"/api/v1/jobs/{job.id}").json()["notice"]

    services.do_sweep_stale_jobs()  # still nobody: it keeps waiting, saying so once
    assert broker == [(str(job.id), POOL)]
    report("gpu1@b", installed=["flux-dev"])
    counts = services.do_sweep_stale_jobs()
    assert counts["rerouted"] == 1
    job.refresh_from_db()
    assert (job.routed_to, job.notice) == ("gpu1@b", "")
    assert broker[-1] == (str(job.id), "gpu.gpu1@b")


def test_the_sweeper_moves_a_queued_job_off_a_worker_that_went_away(team, broker):
    report("gpu0@a", installed=["demo"], loaded=["demo"])
    report("gpu1@b", installed=["demo"])
    job = queued_job(team)
    assert services.do_dispatch(job.id) == "gpu0@a"
    gone("gpu0@a")
    assert services.do_sweep_stale_jobs()["rerouted"] == 1
    job.refresh_from_db()
    assert job.routed_to == "gpu1@b"
    assert broker[-1] == (str(job.id), "gpu.gpu1@b")


def test_nothing_moves_while_no_worker_is_known(team, broker):
    report("gpu0@a", installed=["demo"])
    job = queued_job(team)
    services.do_dispatch(job.id)
    gone("gpu0@a")
    assert services.do_sweep_stale_jobs()["rerouted"] == 0
    job.refresh_from_db()
    assert job.routed_to == "gpu0@a"  # it restarts under its name and takes its own queue again


def test_a_worker_takes_only_jobs_routed_to_it_or_unrouted_ones_it_can_run(team, demo_model_dir):
    mine = queued_job(team)
    theirs = queued_job(team)
    unrouted = queued_job(team)
    not_here = queued_job(team, "flux-dev")
    Job.objects.filter(id=mine.id).update(routed_to="gpu0@a")
    Job.objects.filter(id=theirs.id).update(routed_to="gpu1@b")
    order = [theirs.id, not_here.id, unrouted.id, mine.id]
    assert services.takeable(order, "gpu0@a") == [unrouted.id, mine.id]
    started = services.do_start_job(theirs.id, "gpu0@a")  # a message for someone else's job
    assert started is not None
    assert started[0].id == mine.id  # the first in fair-share order that it may take
    assert services.do_start_job(theirs.id, "gpu0@a")[0].id == unrouted.id
    assert services.do_start_job(theirs.id, "gpu0@a") is None
    assert Job.objects.get(id=theirs.id).status == "queued"


def test_a_job_requeued_from_a_dead_worker_goes_to_another_that_has_its_model(team, broker, settings):
    from datetime import timedelta

    from django.utils import timezone

    report("gpu0@a", installed=["demo"], loaded=["demo"])
    report("gpu1@b", installed=["demo"])
    job = queued_job(team)
    Job.objects.filter(id=job.id).update(
        status="running", worker="gpu0@a", attempt=1, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert services.do_sweep_stale_jobs()["requeued"] == 1
    job.refresh_from_db()
    assert (job.status, job.routed_to) == ("queued", "gpu1@b")


def test_a_job_started_before_its_message_went_out_still_sends_it_for_the_job_it_displaced(
    team, broker, demo_model_dir
):
    """A worker takes the first job in fair-share order with any message: here one whose own message is
    not out yet. That message must still go out (to the worker that took it), or the job whose message was
    used would wait for the sweeper."""
    from datetime import timedelta

    report("gpu0@a", installed=["demo"], loaded=["demo"])
    displaced = queued_job(team)
    assert services.do_dispatch(displaced.id) == "gpu0@a"
    taken = queued_job(team)
    Job.objects.filter(id=taken.id).update(created_at=displaced.created_at - timedelta(seconds=1))
    started = services.do_start_job(displaced.id, "gpu0@a")  # the message of `displaced`
    assert started is not None
    assert started[0].id == taken.id
    assert services.do_dispatch(taken.id) is None  # its commit hook runs now: the message still goes
    assert broker[-1] == (str(taken.id), "gpu.gpu0@a")
    started = services.do_start_job(taken.id, "gpu0@a")
    assert started is not None
    assert started[0].id == displaced.id
