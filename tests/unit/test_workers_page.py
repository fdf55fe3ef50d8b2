"""The workers: root sees the two workers of the fleet, on host-a and host-b, what they hold and whose jobs
they run. For Alice (a lead) and everyone else none of it exists; a worker that stops publishing is gone."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.test import Client

from generation import fleet
from generation.schemas import WorkerOut
from studio import services as studio_services
from tests import factories

GIB = 1 << 30


@pytest.fixture
def fleet_of_two(team, monkeypatch, settings):
    """gpu0@host-a keeps SDXL loaded and runs Bob's job in the poster project; gpu1@host-b is idle."""
    from generation.engine import registry, runner

    settings.STUDIO_WORKER_BEAT_SECONDS = 5.0
    cache.clear()
    monkeypatch.setattr(
        runner,
        "device_report",
        lambda: {
            "device": "cuda:0 NVIDIA H200",
            "memory_total": 140 * GIB,
            "memory_free": 100 * GIB,
            "rss_bytes": 3 * GIB,
            "device_bytes": 40 * GIB,
        },
    )
    monkeypatch.setattr(
        registry, "list_models", lambda: [SimpleNamespace(id="demo"), SimpleNamespace(id="sdxl")]
    )
    monkeypatch.setattr(runner, "loaded_models", lambda: ["sdxl"])
    job = SimpleNamespace(
        id=uuid.uuid4(),
        created_by=team["bob"],
        project=team["project"],
        model_id="sdxl",
        params={"num_images": 2},
    )
    monkeypatch.setenv("STUDIO_WORKER_HOST", "host-a")
    busy = publish("gpu0@host-a", jobs=[job])
    monkeypatch.setattr(runner, "loaded_models", lambda: [])
    monkeypatch.setenv("STUDIO_WORKER_HOST", "host-b")
    idle = publish("gpu1@host-b")
    yield SimpleNamespace(busy=busy, idle=idle, job=job, team=team)
    cache.clear()


def publish(name: str, jobs: list | None = None) -> fleet.Reporter:
    reporter = fleet.Reporter()
    reporter.name = name
    if jobs:
        reporter.running(jobs)  # publishes
    else:
        reporter.publish()
    return reporter


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- the API --


@pytest.mark.django_db
def test_admins_get_the_live_workers_by_name(fleet_of_two):
    team = fleet_of_two.team
    response = signed_in(team["root"]).get("/api/v1/admin/workers")
    assert response.status_code == 200
    workers = response.json()["workers"]
    assert [w["name"] for w in workers] == ["gpu0@host-a", "gpu1@host-b"]
    busy, idle = workers
    assert (busy["host"], idle["host"]) == ("host-a", "host-b")
    assert busy["device"] == "cuda:0 NVIDIA H200"
    assert (busy["memory_free"], busy["memory_total"], busy["rss_bytes"]) == (100 * GIB, 140 * GIB, 3 * GIB)
    assert busy["installed"] == ["demo", "sdxl"] and busy["loaded"] == ["sdxl"] and idle["loaded"] == []
    assert busy["current"] == [
        {"job": str(fleet_of_two.job.id), "user": "bob", "project": "poster", "model": "sdxl", "images": 2}
    ]
    assert idle["current"] == []
    assert busy["jobs_per_hour"] == 0 and busy["images_per_hour"] == 0
    assert isinstance(busy["last_heartbeat"], float)
    assert set(busy) == set(WorkerOut.model_fields)


@pytest.mark.django_db
def test_a_worker_that_stopped_publishing_is_not_listed(fleet_of_two):
    fleet_of_two.busy.finished(jobs=1, images=2)
    cache.delete(fleet.state_key("gpu1@host-b"))  # what its key's lifetime does once it stops
    workers = signed_in(fleet_of_two.team["root"]).get("/api/v1/admin/workers").json()["workers"]
    assert [w["name"] for w in workers] == ["gpu0@host-a"]
    assert workers[0]["current"] == []
    assert (workers[0]["jobs_per_hour"], workers[0]["images_per_hour"]) == (1, 2)


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["alice", "bob", "vera", "charlie"])
def test_the_workers_do_not_exist_for_anyone_but_admins(fleet_of_two, who):
    team = fleet_of_two.team
    response = signed_in(team[who]).get("/api/v1/admin/workers")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found."}
    token = factories.token(team[who])
    assert Client().get("/api/v1/admin/workers", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404
    assert Client().get("/api/v1/admin/workers").status_code == 401


@pytest.mark.django_db
def test_an_admins_token_needs_the_admin_scope(fleet_of_two):
    root = fleet_of_two.team["root"]
    for scope in ("read", "generate"):
        _, token = studio_services.do_create_token(root, scope, scope=scope)
        response = Client().get("/api/v1/admin/workers", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 403, scope
        assert "needs a token with the admin scope" in response.json()["error"]
    _, token = studio_services.do_create_token(root, "admin", scope="admin")
    response = Client().get("/api/v1/admin/workers", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert len(response.json()["workers"]) == 2


@pytest.mark.django_db
def test_the_schema_says_which_figures_may_be_missing(team):
    schema = signed_in(team["bob"]).get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/admin/workers"]["get"]
    assert operation["tags"] == ["admin"]
    assert set(operation["responses"]) >= {"200", "401", "403", "404"}
    worker = schema["components"]["schemas"]["WorkerOut"]
    for name in ("memory_total", "memory_free", "rss_bytes", "last_heartbeat"):
        assert {"type": "null"} in worker["properties"][name]["anyOf"], name
    assert "null" not in str(worker["properties"]["name"])
    assert set(worker["required"]) == set(worker["properties"])
