"""The websocket consumers: members get the job's state at once; outsiders and bad origins are refused."""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.core.cache import cache

from generation import realtime, services
from generation.models import Job
from studio.asgi import application
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def connect(path: str, *, token: str | None = None, origin: str | None = "http://127.0.0.1:8000"):
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin:
        headers.append((b"origin", origin.encode()))
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def job(team, monkeypatch, demo_model_dir):
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    cache.clear()
    return services.do_create_job(team["bob"], team["project"], {"prompt": "a blue square", "steps": 10})


def test_a_member_gets_the_current_state_then_live_events(team, job):
    token = factories.token(team["vera"])  # a viewer may watch

    async def scenario():
        ws = connect(f"/ws/jobs/{job.id}/", token=token)
        connected, _ = await ws.connect()
        assert connected
        first = await ws.receive_json_from()
        assert first == {
            "type": "status",
            "status": "queued",
            "progress": {"step": 0, "total": 10},
            "queue_position": 1,
        }
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(
            realtime.job_group(job.id),
            {"type": realtime.HANDLER, "payload": {"type": "progress", "step": 3, "total": 10}},
        )
        assert await ws.receive_json_from() == {"type": "progress", "step": 3, "total": 10}
        await ws.disconnect()

    run(scenario())


def test_a_late_joiner_gets_progress_and_the_latest_preview_at_once(team, job):
    Job.claim(job.id, "w")
    preview = {"type": "preview", "step": 4, "total": 10, "image": "data:image/jpeg;base64,AAAA"}
    cache.set(realtime.preview_cache_key(job.id), preview)
    cache.set(realtime.progress_cache_key(job.id), [4, 10])
    token = factories.token(team["alice"])

    async def scenario():
        ws = connect(f"/ws/jobs/{job.id}/", token=token)
        assert (await ws.connect())[0]
        status = await ws.receive_json_from()
        assert status["status"] == "running"
        assert status["progress"] == {"step": 4, "total": 10}
        assert await ws.receive_json_from() == preview
        await ws.disconnect()

    run(scenario())


def test_a_finished_job_sends_its_outcome_on_connect(team, job):
    attempt = Job.claim(job.id, "w")
    services.do_finish_job(job.id, attempt, "failed", error="The model ran out of memory.")
    token = factories.token(team["bob"])

    async def scenario():
        ws = connect(f"/ws/jobs/{job.id}/", token=token)
        assert (await ws.connect())[0]
        assert (await ws.receive_json_from())["status"] == "failed"
        assert await ws.receive_json_from() == {"type": "failed", "error": "The model ran out of memory."}
        await ws.disconnect()

    run(scenario())


@pytest.mark.parametrize("who", ["charlie", "anonymous", "bad-token"])
def test_outsiders_are_refused(team, job, who):
    token = {"charlie": factories.token(team["charlie"]), "anonymous": None, "bad-token": "stu_forged"}[who]

    async def scenario():
        for path in (f"/ws/jobs/{job.id}/", f"/ws/projects/{team['project'].slug}/", "/ws/jobs/not-a-uuid/"):
            ws = connect(path, token=token)
            connected, _ = await ws.connect()
            assert not connected, path

    run(scenario())


def test_a_foreign_origin_is_refused_even_for_a_member(team, job):
    token = factories.token(team["alice"])

    async def scenario():
        ws = connect(f"/ws/jobs/{job.id}/", token=token, origin="http://evil.example")
        assert not (await ws.connect())[0]
        # no Origin at all: only a script with a token gets through
        ws = connect(f"/ws/jobs/{job.id}/", token=token, origin=None)
        assert (await ws.connect())[0]
        await ws.disconnect()
        ws = connect(f"/ws/jobs/{job.id}/", origin=None)
        assert not (await ws.connect())[0]

    run(scenario())


def test_the_project_stream_starts_with_active_jobs_and_relays_events(team, job):
    token = factories.token(team["bob"])

    async def scenario():
        ws = connect(f"/ws/projects/{team['project'].slug}/", token=token)
        assert (await ws.connect())[0]
        snapshot = await ws.receive_json_from()
        assert snapshot["type"] == "snapshot"
        assert [j["id"] for j in snapshot["active_jobs"]] == [str(job.id)]
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(
            realtime.project_group(team["project"].slug),
            {"type": realtime.HANDLER, "payload": {"type": "asset.created", "asset": {"id": "x"}}},
        )
        assert (await ws.receive_json_from())["type"] == "asset.created"
        await ws.disconnect()

    run(scenario())


def test_queued_sockets_hear_their_new_position(team, job):
    second = services.do_create_job(team["bob"], team["project"], {"prompt": "a green star"})
    token = factories.token(team["bob"])

    async def scenario():
        ws = connect(f"/ws/jobs/{second.id}/", token=token)
        assert (await ws.connect())[0]
        assert (await ws.receive_json_from())["queue_position"] == 2
        from channels.db import database_sync_to_async

        await database_sync_to_async(services.do_start_job)(job.id, "w")
        update = await ws.receive_json_from()
        assert update["status"] == "queued"
        assert update["queue_position"] == 1
        await ws.disconnect()

    run(scenario())


def test_the_sockets_of_one_process_share_one_read_of_the_queue_when_it_moves(team, job, monkeypatch):
    from generation import consumers

    later = [services.do_create_job(team["bob"], team["project"], {"prompt": f"star {i}"}) for i in range(2)]
    reads: list[str] = []
    order = consumers.fair_share_order

    def counted(queue, limit):
        reads.append(queue)
        return order(queue, limit)

    monkeypatch.setattr(consumers, "fair_share_order", counted)
    token = factories.token(team["bob"])

    async def scenario():
        sockets = [connect(f"/ws/jobs/{j.id}/", token=token) for j in (job, *later, *later)]
        for ws in sockets:
            assert (await ws.connect())[0]
            await ws.receive_json_from()  # the state on joining
        from channels.db import database_sync_to_async

        await database_sync_to_async(services.do_start_job)(job.id, "w")
        heard = []
        for ws in sockets[1:]:
            update = await ws.receive_json_from()
            while update["type"] != "status" or update["status"] != "queued":
                update = await ws.receive_json_from()
            heard.append(update["queue_position"])
        assert heard == [1, 2, 1, 2]
        for ws in sockets:
            await ws.disconnect()

    run(scenario())
    assert reads == [job.queue], "four sockets of queued jobs, one read of their queue"


def test_live_events_reach_sockets_without_a_database_round_trip(team, job, monkeypatch):
    """Channels closes stale database connections in a thread before each message; the studio's events,
    hundreds a second with many viewers, skip that (their handlers use no connection)."""
    import channels.consumer

    closes: list[int] = []
    original = channels.consumer.aclose_old_connections

    async def counted():
        closes.append(1)
        await original()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    token = factories.token(team["bob"])

    async def scenario():
        ws = connect(f"/ws/jobs/{job.id}/", token=token)
        assert (await ws.connect())[0]
        await ws.receive_json_from()
        before = len(closes)
        from channels.layers import get_channel_layer

        for step in range(1, 6):
            await get_channel_layer().group_send(
                realtime.job_group(job.id),
                {"type": realtime.HANDLER, "payload": {"type": "progress", "step": step, "total": 10}},
            )
            assert (await ws.receive_json_from())["step"] == step
        assert len(closes) == before
        await ws.disconnect()

    run(scenario())
    assert closes, "the handshake still goes through Channels' own dispatch"


def test_a_session_end_closes_every_socket_of_that_user(team, job):
    token = factories.token(team["bob"])

    async def scenario():
        job_ws = connect(f"/ws/jobs/{job.id}/", token=token)
        project_ws = connect(f"/ws/projects/{team['project'].slug}/", token=token)
        for ws in (job_ws, project_ws):
            assert (await ws.connect())[0]
            await ws.receive_json_from()
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(
            realtime.user_group(team["bob"].id),
            {"type": realtime.HANDLER, "payload": {"type": realtime.SESSION_END}},
        )
        for ws in (job_ws, project_ws):
            closed = await ws.receive_output()
            assert closed == {"type": "websocket.close", "code": realtime.CLOSE_ACCESS_ENDED}

    run(scenario())
