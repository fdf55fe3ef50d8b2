"""Manage → Workers: root sees the two workers of the fleet, on host-a and host-b, what they hold and whose
jobs they run, in the API, on the page and live over its socket. For Alice (a lead) and everyone else none of
it exists; a worker that stops publishing is gone."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client

from generation import fleet
from generation.schemas import WorkerOut
from studio import services as studio_services
from studio import sockets
from tests import factories

GIB = 1 << 30
SCOPES = ["read", "generate", "admin"]


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


# --- the page --


@pytest.mark.django_db
def test_the_page_shows_each_worker_and_whose_jobs_it_runs(fleet_of_two):
    client = signed_in(fleet_of_two.team["root"])
    response = client.get("/manage/workers/")
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("gpu0@host-a", "gpu1@host-b", "host-a", "host-b", "cuda:0 NVIDIA H200"):
        assert text in html, text
    assert 'data-worker="gpu0@host-a"' in html and 'data-worker="gpu1@host-b"' in html
    assert "100.0\xa0GB free of 140.0\xa0GB" in html
    assert f'href="/jobs/{fleet_of_two.job.id}/">bob</a> in <span data-field="project">poster</span>' in html
    assert "2 images" in html
    assert "0 s ago" in html or "1 s ago" in html
    assert 'data-gone="false"' in html
    assert 'data-beat="5.000"' in html
    assert 'id="worker-row-template"' in html and 'id="worker-job-template"' in html
    assert "generation/workers.js" in html
    assert "<script>" not in html  # the policy allows no inline script
    assert 'aria-current="page">Workers</a>' in html
    # Every page of the admin area links to it.
    assert 'href="/manage/workers/"' in client.get("/manage/users/").content.decode()


@pytest.mark.django_db
def test_a_silent_worker_is_marked_gone_and_an_empty_fleet_says_so(fleet_of_two, settings):
    import time

    client = signed_in(fleet_of_two.team["root"])
    # Their keys live three beats of 5 s; with beats of 10 ms, they have been silent for more than three.
    settings.STUDIO_WORKER_BEAT_SECONDS = 0.01
    time.sleep(0.05)
    html = client.get("/manage/workers/").content.decode()
    assert html.count('data-gone="true"') == 2
    assert html.count('class="badge worker-gone" data-field="gone">') == 2  # shown, not hidden
    cache.clear()
    html = client.get("/manage/workers/").content.decode()
    assert "data-worker=" not in html.split('id="workers-body"')[1].split("</tbody>")[0]
    assert "No worker has told the fleet its state" in html


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["alice", "bob", "vera", "charlie"])
def test_the_page_does_not_exist_for_anyone_but_admins(fleet_of_two, who):
    client = signed_in(fleet_of_two.team[who])
    assert client.get("/manage/workers/").status_code == 404
    assert 'href="/manage/workers/"' not in client.get("/").content.decode()
    response = Client().get("/manage/workers/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- the socket --


def connect(token: str, path: str = "/ws/workers/") -> WebsocketCommunicator:
    from studio.asgi import application

    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"origin", b"http://127.0.0.1:8000"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.mark.django_db(transaction=True)
def test_the_socket_sends_the_fleet_then_each_new_state(fleet_of_two, monkeypatch):
    token = factories.token(fleet_of_two.team["root"])

    async def scenario():
        ws = connect(token)
        assert (await ws.connect())[0]
        snapshot = await ws.receive_json_from()
        assert snapshot["type"] == "workers"
        assert [w["name"] for w in snapshot["workers"]] == ["gpu0@host-a", "gpu1@host-b"]
        assert snapshot["workers"][0]["current"][0]["user"] == "bob"
        assert isinstance(snapshot["now"], float)
        monkeypatch.setenv("STUDIO_WORKER_HOST", "host-c")
        await sync_to_async(publish)("gpu2@host-c")
        relayed = await ws.receive_json_from()
        assert relayed["type"] == "worker.state"
        assert relayed["worker"]["name"] == "gpu2@host-c" and relayed["worker"]["host"] == "host-c"
        assert relayed["worker"] == fleet.public_state(cache.get(fleet.state_key("gpu2@host-c")))
        await sync_to_async(fleet_of_two.busy.finished)(1, 2)
        relayed = await ws.receive_json_from()
        assert relayed["worker"]["name"] == "gpu0@host-a"
        assert (relayed["worker"]["current"], relayed["worker"]["images_per_hour"]) == ([], 2)
        await ws.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_the_socket_refuses_anyone_but_admins(fleet_of_two, who):
    token = factories.token(fleet_of_two.team[who])

    async def scenario():
        ws = connect(token)
        connected, _ = await ws.connect()
        assert not connected
        await sync_to_async(publish)("gpu2@host-c")
        assert await ws.receive_nothing()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_the_socket_needs_an_admin_scoped_token_as_the_api_does(fleet_of_two):
    root = fleet_of_two.team["root"]
    tokens = {scope: studio_services.do_create_token(root, scope, scope=scope)[1] for scope in SCOPES}

    async def scenario():
        opened = {}
        for scope, token in tokens.items():
            ws = connect(token)
            opened[scope] = (await ws.connect())[0]
            if opened[scope]:
                await ws.disconnect()
        return opened

    assert asyncio.run(scenario()) == {"read": False, "generate": False, "admin": True}


@pytest.mark.django_db(transaction=True)
def test_an_admin_who_loses_admin_rights_is_cut_off(fleet_of_two):
    """Root watches the workers and the poster project (which he does not belong to); the identity
    provider's groups stop making him a site admin."""
    root = fleet_of_two.team["root"]
    token = factories.token(root)

    async def scenario():
        ws = connect(token)
        project = connect(token, "/ws/projects/poster/")
        for socket in (ws, project):
            assert (await socket.connect())[0]
            await socket.receive_json_from()  # the snapshot
        await database_sync_to_async(studio_services.do_set_site_admin)(root, False, via="test")
        for socket in (ws, project):
            closed = await socket.receive_output()
            assert closed == {"type": "websocket.close", "code": sockets.CLOSE_ACCESS_ENDED}
        await sync_to_async(publish)("gpu2@host-c")
        assert await ws.receive_nothing()

    asyncio.run(scenario())
