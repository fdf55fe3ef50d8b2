"""/metrics: who may scrape it, and what it says about jobs, projects, workers and requests; JSON logs."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from generation import metrics as generation_metrics
from generation.models import Job
from studio.logs import JobContextFilter, JsonFormatter, job_context
from tests import factories

pytestmark = pytest.mark.django_db

TOKEN = "metrics-" + "t" * 32


def value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def scraper(settings):
    settings.STUDIO_METRICS_TOKEN = TOKEN
    settings.STUDIO_METRICS_ALLOW = ["10.9.0.0/16"]
    return settings


def test_the_token_or_an_allowed_network_opens_metrics_and_nothing_else_does(scraper):
    inside, outside = Client(REMOTE_ADDR="10.9.3.4"), Client(REMOTE_ADDR="192.0.2.7")
    assert inside.get("/metrics").status_code == 200
    assert outside.get("/metrics").status_code == 404
    assert outside.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    alice = factories.user("alice")
    assert outside.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {factories.token(alice)}").status_code == 404
    # Relayed by the proxy: the proxy's own address must not let everyone in, and the header is the
    # client's to write, so only the token counts.
    assert inside.get("/metrics", HTTP_X_FORWARDED_FOR="10.9.3.4").status_code == 404
    assert (
        inside.get(
            "/metrics", HTTP_X_FORWARDED_FOR="10.9.3.4", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
        ).status_code
        == 200
    )
    assert outside.post("/metrics").status_code == 405


def test_without_a_token_configured_a_bearer_never_opens_metrics(settings):
    settings.STUDIO_METRICS_TOKEN = ""
    outside = Client(REMOTE_ADDR="192.0.2.7")
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def finished_job(project, user, status, *, ran: float, waited: float) -> Job:
    now = timezone.now()
    return Job.objects.create(
        project=project,
        created_by=user,
        model_id="demo",
        queue="gpu",
        params={"prompt": "secret prompt"},
        status=status,
        created_at=now - timedelta(seconds=ran + waited),
        started_at=now - timedelta(seconds=ran),
        finished_at=now,
    )


def test_jobs_queues_projects_and_timings_are_reported(scraper, team):
    from django.core.cache import cache

    from studio import quotas

    cache.clear()
    poster = team["project"]
    for _ in range(2):
        Job.objects.create(
            project=poster, created_by=team["alice"], model_id="demo", queue="gpu-a", params={}
        )
    Job.objects.create(project=poster, created_by=team["alice"], model_id="demo", queue="gpu-b", params={})
    job = finished_job(poster, team["alice"], "succeeded", ran=3.0, waited=0.2)
    generation_metrics.record_job_timing(job)
    generation_metrics.record_job_timing(finished_job(poster, team["alice"], "failed", ran=70, waited=40))
    period = quotas.reserve(team["alice"], poster, 2)
    Job.objects.filter(id=job.id).update(quota_period_start=period, reserved_images=2)
    job.refresh_from_db()
    quotas.settle(job, 2, 3.5)

    text = Client(REMOTE_ADDR="10.9.0.1").get("/metrics").content.decode()
    assert value(text, "studio_jobs", state="queued") == 3
    assert value(text, "studio_jobs", state="succeeded") == 1
    assert value(text, "studio_jobs", state="canceled") == 0
    assert value(text, "studio_queue_length", pool="gpu-a") == 2
    assert value(text, "studio_queue_length", pool="gpu-b") == 1
    assert value(text, "studio_project_images_total", project="poster") == 2
    assert value(text, "studio_project_gpu_seconds_total", project="poster") == 3.5
    assert value(text, "studio_job_duration_seconds_count") == 2
    assert value(text, "studio_job_duration_seconds_bucket", le="5.0") == 1
    assert value(text, "studio_job_duration_seconds_bucket", le="+Inf") == 2
    assert value(text, "studio_job_duration_seconds_sum") == pytest.approx(73, abs=0.01)
    assert value(text, "studio_job_queue_wait_seconds_bucket", le="0.5") == 1
    assert "secret prompt" not in text


def test_workers_report_their_models_and_memory_and_vanish_when_they_stop(scraper, monkeypatch):
    from django.core.cache import cache

    from generation.engine import runner

    cache.clear()
    from generation.fleet import Reporter

    monkeypatch.setattr(runner, "loaded_models", lambda: ["demo", "sdxl"])
    reporter = Reporter()
    reporter.name = "gpu0@host-a"
    reporter.publish()
    text = Client(REMOTE_ADDR="10.9.0.1").get("/metrics").content.decode()
    assert value(text, "studio_worker_model_loaded", model="sdxl", worker="gpu0@host-a") == 1
    assert value(text, "studio_worker_memory_bytes", worker="gpu0@host-a") > 1_000_000
    cache.delete("fleet:worker:gpu0@host-a")  # what its TTL does once it stops refreshing
    text = Client(REMOTE_ADDR="10.9.0.1").get("/metrics").content.decode()
    assert "gpu0@host-a" not in text


def test_requests_are_counted_by_route_not_by_path(scraper, team):
    client = Client(REMOTE_ADDR="10.9.0.1")
    before = client.get("/metrics").content.decode()
    client.force_login(team["alice"])
    for asset_id in ("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"):
        assert client.get(f"/api/v1/assets/{asset_id}").status_code == 404
    after = client.get("/metrics").content.decode()
    labels = {"method": "GET", "route": "api-asset", "status": "4xx"}
    assert (
        value(after, "studio_http_requests_total", **labels)
        == value(before, "studio_http_requests_total", **labels) + 2
    )
    assert "00000000-0000-0000-0000-000000000001" not in after


def test_json_log_lines_name_the_job_and_never_its_prompt():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContextFilter())
    log = logging.getLogger("studio.test-json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("outside any job")
        with job_context(job_id="j-1", user="alice", project="poster", worker="gpu0@host"):
            log.info("Job %s started (attempt %d)", "j-1", 1)
    finally:
        log.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert outside["message"] == "outside any job" and "job_id" not in outside
    assert inside["level"] == "INFO" and inside["logger"] == "studio.test-json"
    assert (inside["job_id"], inside["user"], inside["project"], inside["worker"]) == (
        "j-1",
        "alice",
        "poster",
        "gpu0@host",
    )
    assert "time" in inside


def test_a_worker_logs_every_line_of_a_job_with_its_context_and_without_its_prompt(
    demo_model_dir, team, settings, caplog
):
    from generation import services
    from generation.tasks import run_job

    settings.STUDIO_DEFAULT_MODEL = "demo"
    prompt = "a very private prompt about a green triangle"
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            captured.append(record)

    keep = Keep()
    keep.addFilter(JobContextFilter())
    logging.getLogger().addHandler(keep)
    try:
        from unittest import mock

        with mock.patch.object(services, "enqueue", return_value=None):
            job = services.do_create_job(
                team["alice"], team["project"], {"prompt": prompt, "steps": 2, "width": 64, "height": 64}
            )
        run_job.apply(args=(str(job.id),))
    finally:
        logging.getLogger().removeHandler(keep)
    about_job = [r for r in captured if getattr(r, "job_id", None) == str(job.id)]
    assert {r.getMessage() for r in about_job} >= {
        f"Job {job.id} started (attempt 1)",
        f"Job {job.id} ended: succeeded",
    }
    assert all(r.user == "alice" and r.project == "poster" and r.worker for r in about_job)
    formatter = JsonFormatter()
    assert not [r for r in captured if prompt in formatter.format(r)]
