"""A job's life through the worker code and the real (tiny) engine: states, live events, duplicates,
cancellation, and the sweeper that rescues jobs whose worker died."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.utils import timezone
from PIL import Image

from gallery.models import Asset
from generation import realtime, services
from generation.models import Job
from generation.scheduling import queue_position
from generation.tasks import run_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch, demo_model_dir):
    """Record what would be sent to Celery instead of sending it."""
    sent: list[str] = []
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: sent.append(str(job_id)))
    cache.clear()
    return sent


def new_job(team, **params):
    return services.do_create_job(
        team["bob"], team["project"], {"prompt": "a red circle", "seed": 7, **params}
    )


class Listener:
    """A channel subscribed to a job's group, like a websocket client would be."""

    def __init__(self, job_id) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(realtime.job_group(job_id), self.channel)

    def drain(self) -> list[dict]:
        async def pull() -> list[dict]:
            out: list[dict] = []
            while True:
                try:
                    import asyncio

                    message = await asyncio.wait_for(self.layer.receive(self.channel), 0.2)
                except TimeoutError:
                    return out
                out.append(message["payload"])

        return async_to_sync(pull)()


def test_a_job_runs_to_success_with_live_events_and_provenance(team, demo_model_dir, no_broker):
    job = new_job(team, steps=12, num_images=2)
    assert no_broker == [str(job.id)]
    listener = Listener(job.id)
    assert run_job(str(job.id)) == "succeeded"

    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.started_at
    assert job.finished_at
    assert job.gpu_seconds > 0
    events = listener.drain()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "status"
    assert events[0]["status"] == "running"
    assert kinds[-1] == "succeeded"
    steps = [e["step"] for e in events if e["type"] == "progress"]
    assert steps == list(range(1, 13))
    previews = [e for e in events if e["type"] == "preview"]
    assert len(previews) >= 3
    assert all(p["image"].startswith("data:image/jpeg;base64,") for p in previews)
    assert [p["step"] for p in previews] == sorted(p["step"] for p in previews)

    assets = list(Asset.objects.filter(job=job).order_by("index"))
    assert [a.seed for a in assets] == [7, 8]
    assert [a["id"] for a in events[-1]["assets"]] == [str(a.id) for a in assets]
    for asset in assets:
        data = asset.file.read()
        asset.file.close()
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG"
        assert image.size == (64, 64)
        assert f"Seed: {asset.seed}" in image.text["parameters"]
        assert "Steps: 12" in image.text["parameters"]
        studio = json.loads(image.text["studio"])
        assert studio["params"]["seed"] == asset.seed
        assert studio["model_sha256"] == asset.model_sha256
        assert len(asset.model_sha256) == 64


def test_a_second_delivery_of_a_finished_job_does_nothing(team, demo_model_dir):
    job = new_job(team, steps=3)
    assert run_job(str(job.id)) == "succeeded"
    assert run_job(str(job.id)) == "skipped"
    assert Asset.objects.filter(job=job).count() == 1
    assert Job.objects.get(id=job.id).attempt == 1


def test_a_second_delivery_of_a_running_job_does_nothing(team):
    job = new_job(team)
    assert Job.claim(job.id, "worker-a") == 1
    assert run_job(str(job.id)) == "skipped"
    job.refresh_from_db()
    assert job.status == "running"
    assert job.worker == "worker-a"


def test_completing_twice_stores_one_set_of_assets(team, demo_model_dir):
    job = new_job(team)
    _, attempt = services.do_start_job(job.id, "w")
    image = Image.new("RGB", (64, 64), "red")
    kwargs = {"gpu_seconds": 1.0, "model_name": "Demo", "model_sha256": "0" * 64}
    assert services.do_complete_job(job, attempt, [image], [7], **kwargs) is True
    assert services.do_complete_job(job, attempt, [image], [7], **kwargs) is False
    assert Asset.objects.filter(job=job).count() == 1


def test_terminal_states_are_final(team):
    job = new_job(team)
    attempt = Job.claim(job.id, "w")
    assert Job.finish(job.id, attempt, "failed", error="boom")
    assert not Job.finish(job.id, attempt, "succeeded")
    assert not Job.cancel_queued(job.id)
    assert not Job.request_cancel(job.id)
    assert Job.claim(job.id, "w") is None
    assert Job.objects.get(id=job.id).status == "failed"


def test_cancel_stops_a_running_job_within_one_step(team, demo_model_dir, monkeypatch):
    from generation.worker import JobMonitor

    job = new_job(team, steps=30)
    seen: list[int] = []
    original = JobMonitor.on_step

    def on_step(self, step, total):
        seen.append(step)
        original(self, step, total)
        if step == 5:
            services.do_cancel_job(team["bob"], Job.objects.get(id=job.id))

    monkeypatch.setattr(JobMonitor, "on_step", on_step)
    listener = Listener(job.id)
    assert run_job(str(job.id)) == "canceled"
    assert max(seen) <= 6
    job.refresh_from_db()
    assert job.status == "canceled"
    assert job.finished_at
    assert Asset.objects.filter(job=job).count() == 0
    assert listener.drain()[-1] == {"type": "canceled"}


def test_cancel_of_a_queued_job_is_immediate_and_the_task_then_skips_it(team):
    job = new_job(team)
    services.do_cancel_job(team["bob"], job)
    assert Job.objects.get(id=job.id).status == "canceled"
    assert run_job(str(job.id)) == "skipped"


def test_queue_positions(team):
    jobs = [new_job(team) for _ in range(3)]
    assert [queue_position(Job.objects.get(id=j.id)) for j in jobs] == [1, 2, 3]
    services.do_start_job(jobs[0].id, "w")
    assert [queue_position(Job.objects.get(id=j.id)) for j in jobs] == [None, 1, 2]


def test_a_failing_model_fails_the_job_with_a_message(team, demo_model_dir, monkeypatch):
    import contextlib

    import torch

    @contextlib.contextmanager
    def boom(loaded, loras):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; /opt/x)")
        yield

    monkeypatch.setattr("generation.engine.pipelines.loras_applied", boom)
    job = new_job(team)
    listener = Listener(job.id)
    assert run_job(str(job.id)) == "failed"
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == (
        "Generation failed: The worker ran out of memory for this job: try a smaller size or fewer images "
        "at once."
    )
    assert listener.drain()[-1] == {"type": "failed", "error": job.error}


def test_the_sweeper_requeues_a_job_whose_worker_stopped_beating(team, settings, no_broker):
    settings.STUDIO_JOB_STALE_SECONDS = 30
    job = new_job(team)
    no_broker.clear()
    attempt = Job.claim(job.id, "dead-worker")
    Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    fresh = new_job(team)
    Job.claim(fresh.id, "live-worker")
    no_broker.clear()

    counts = services.do_sweep_stale_jobs()
    assert counts["requeued"] == 1
    assert no_broker == [str(job.id)]
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.attempt == attempt
    assert Job.objects.get(id=fresh.id).status == "running"
    # the dead worker's late completion can no longer land
    assert not Job.finish(job.id, attempt, "succeeded")


def test_the_sweeper_gives_up_after_max_attempts_and_honours_cancels(team, settings):
    settings.STUDIO_JOB_STALE_SECONDS = 30
    settings.STUDIO_JOB_MAX_ATTEMPTS = 1
    old = timezone.now() - timedelta(minutes=5)
    tired, canceled = new_job(team), new_job(team)
    for job in (tired, canceled):
        Job.claim(job.id, "dead")
    Job.request_cancel(canceled.id)
    Job.objects.filter(id__in=[tired.id, canceled.id]).update(heartbeat_at=old)
    counts = services.do_sweep_stale_jobs()
    assert counts["failed"] == 1
    assert counts["canceled"] == 1
    assert "stopped 1 times" in Job.objects.get(id=tired.id).error
    assert Job.objects.get(id=canceled.id).status == "canceled"


def test_the_sweeper_resends_long_queued_jobs(team, settings, no_broker):
    settings.STUDIO_JOB_REQUEUE_SECONDS = 60
    job = new_job(team)
    no_broker.clear()
    Job.objects.filter(id=job.id).update(enqueued_at=timezone.now() - timedelta(minutes=2))
    assert services.do_sweep_stale_jobs()["resent"] == 1
    assert no_broker == [str(job.id)]
    assert services.do_sweep_stale_jobs()["resent"] == 0  # not again until it is old again


def test_a_restarted_worker_requeues_the_jobs_it_left_running(team, no_broker):
    job = new_job(team)
    Job.claim(job.id, "celery@box")
    no_broker.clear()
    assert services.do_recover_worker_jobs("celery@other") == 0
    assert services.do_recover_worker_jobs("celery@box") == 1
    assert Job.objects.get(id=job.id).status == "queued"
    assert no_broker == [str(job.id)]


def test_the_same_seed_reproduces_the_same_image(team, demo_model_dir, settings):
    settings.STUDIO_MAX_BATCH = 1  # each job alone (tests/unit/test_batching.py: the same in one call)
    first, second = new_job(team, seed=1234, steps=6), new_job(team, seed=1234, steps=6)
    other = new_job(team, seed=99, steps=6)
    for job in (first, second, other):
        assert run_job(str(job.id)) == "succeeded"

    def pixels(job):
        asset = Asset.objects.get(job=job)
        with asset.file.open("rb") as fh:
            return Image.open(io.BytesIO(fh.read())).tobytes()

    assert pixels(first) == pixels(second)
    assert pixels(first) != pixels(other)


def test_fair_share_single_jobs_do_not_wait_behind_a_batch(team, monkeypatch, demo_model_dir):
    """Three users enqueue 5, 1 and 1 jobs (the five first): the single jobs run second and third."""
    from generation.engine import runner
    from tests import factories

    dana = factories.user("dana")
    factories.member(team["project"], dana, "artist")

    def instant(request, hooks):
        hooks.on_step(1, 1)
        return runner.GenerationResult(
            images=[Image.new("RGB", (8, 8))],
            seeds=[request.params.seed],
            model_sha256="0" * 64,
            gpu_seconds=2.0,
            canceled=False,
            device="cpu",
        )

    monkeypatch.setattr(runner, "generate", instant)
    batch = [new_job(team) for _ in range(5)]  # bob's five
    alice_job = services.do_create_job(team["alice"], team["project"], {"prompt": "one", "seed": 1})
    dana_job = services.do_create_job(dana, team["project"], {"prompt": "one", "seed": 1})
    assert queue_position(Job.objects.get(id=dana_job.id)) == 3  # bob's first, alice's, then dana's

    for job in [*batch, alice_job, dana_job]:  # one message per job, in submission order
        run_job(str(job.id))
    order = list(Job.objects.order_by("started_at").values_list("created_by__username", flat=True))
    assert order == ["bob", "alice", "dana", "bob", "bob", "bob", "bob"]
