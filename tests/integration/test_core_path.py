"""The core path on the real things: PostgreSQL, Redis, a Celery worker process and daphne."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.files.storage import default_storage
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gallery.models import Asset
from generation.models import Job
from tests import factories
from tests.integration.stack import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def follow(stack, job_id: str, token: str, until: set[str], timeout: float = 60) -> list[dict]:
    """Listen on /ws/jobs/{id}/ until a message of one of the ``until`` types; return every message."""
    messages = []
    with connect(
        f"{stack.ws_url}/ws/jobs/{job_id}/",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    ) as ws:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            messages.append(message)
            if message["type"] in until:
                return messages
    raise AssertionError(f"no {until} within {timeout}s: {messages[-3:]}")


def test_a_script_creates_a_job_and_watches_it_form_live(stack):
    alice = factories.user("alice")
    token = factories.token(alice)
    status, project = stack.api("POST", "/api/v1/projects", token, {"name": "Key art"})
    assert status == 201, project
    status, job = stack.api(
        "POST",
        f"/api/v1/projects/{project['slug']}/jobs",
        token,
        {"prompt": "a red circle on a blue background", "steps": 40, "width": 128, "height": 128, "seed": 42},
    )
    assert status == 201, job

    messages = follow(stack, job["id"], token, {"succeeded", "failed", "canceled"})
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "status"
    assert kinds[-1] == "succeeded", messages[-1]
    steps = [m["step"] for m in messages if m["type"] in ("progress", "preview")]
    assert steps == sorted(steps), "progress arrives in order"
    previews = [m for m in messages if m["type"] == "preview"]
    assert len(previews) >= 3
    assert len({p["image"] for p in previews}) >= 3, "previews change as the image forms"
    running_at = kinds.index("status") if messages[0]["status"] == "running" else None
    assert running_at is not None or "status" in kinds

    status, final = stack.api("GET", f"/api/v1/jobs/{job['id']}", token)
    assert final["status"] == "succeeded"
    assert final["params"]["seed"] == 42
    assert final["progress"] == {"step": 40, "total": 40}
    [asset] = final["assets"]
    assert messages[-1]["assets"][0]["id"] == asset["id"]

    status, png = stack.api("GET", asset["image_url"], token)
    assert status == 200
    image = Image.open(io.BytesIO(png))
    assert image.size == (128, 128)
    assert "Seed: 42" in image.text["parameters"]

    row = Asset.objects.get(id=asset["id"])
    assert default_storage.exists(row.file.name)
    assert row.model_sha256 == asset["model_sha256"]
    assert len(row.model_sha256) == 64
    assert json.loads(image.text["studio"])["job"] == job["id"]

    status, listing = stack.api("GET", f"/api/v1/projects/{project['slug']}/assets", token)
    assert [a["id"] for a in listing["results"]] == [asset["id"]]


def test_outsiders_get_404_and_their_websocket_is_refused(stack):
    alice, charlie = factories.user("alice"), factories.user("charlie")
    project = factories.project(alice)
    job = Job.objects.create(
        project=project,
        created_by=alice,
        model_id="demo",
        queue="none",
        params=factories.job_params(prompt="x"),
        status="succeeded",
    )
    token = factories.token(charlie)
    for path in (f"/api/v1/jobs/{job.id}", f"/api/v1/projects/{project.slug}/assets"):
        assert stack.api("GET", path, token)[0] == 404
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{stack.ws_url}/ws/jobs/{job.id}/", additional_headers={"Authorization": f"Bearer {token}"})
    assert refused.value.response.status_code == 403


def test_a_job_survives_its_worker_being_killed(stack):
    """kill -9 mid-job → a new worker starts → the sweeper re-queues → the job finishes exactly once."""
    alice = factories.user("alice")
    project = factories.project(alice)
    token = factories.token(alice)
    status, job = stack.api(
        "POST",
        f"/api/v1/projects/{project.slug}/jobs",
        token,
        {"prompt": "a green star", "steps": 120, "width": 96, "height": 96, "seed": 5},
    )
    assert status == 201, job
    wait_until(
        lambda: Job.objects.filter(id=job["id"], status="running", progress_step__gte=3).exists(),
        60,
        what="the job to be running",
    )
    stack.kill_worker()
    dead = Job.objects.get(id=job["id"])
    assert dead.status == "running"
    assert dead.attempt == 1

    stack.start_worker(name="replacement")
    stack.wait_worker_ready()
    # The sweeper (beat in production, `manage.py sweep_jobs` here) notices the stale heartbeat.
    from generation.services import do_sweep_stale_jobs

    wait_until(
        lambda: do_sweep_stale_jobs()["requeued"] == 1 or Job.objects.get(id=job["id"]).attempt > 1,
        30,
        interval=0.5,
        what="the sweeper to re-queue the job",
    )
    finished = wait_until(
        lambda: Job.objects.filter(id=job["id"], status__in=["succeeded", "failed", "canceled"]).first(),
        120,
        interval=0.2,
        what="the job to finish",
    )
    assert finished.status == "succeeded", finished.error
    assert finished.attempt == 2
    assert Asset.objects.filter(job_id=job["id"]).count() == 1
