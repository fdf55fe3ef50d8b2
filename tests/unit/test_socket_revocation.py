"""Open sockets follow access as it changes: a removed member's close at once and hear nothing more, a
changed role is told, a password change closes the other sessions' sockets, and a bad frame gets an answer
instead of a crash."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from generation import realtime, services
from studio import services as studio_services
from studio.asgi import application
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
PREVIEW = {"type": "preview", "step": 5, "total": 10, "image": "data:image/jpeg;base64,AAAA"}


def connect(path: str, *, token: str | None = None, session_key: str | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if session_key:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.fixture
def job(team, monkeypatch, demo_model_dir):
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    return services.do_create_job(team["alice"], team["project"], {"prompt": "a blue square", "steps": 10})


async def open_sockets(paths: list[str], **auth: str) -> list[WebsocketCommunicator]:
    sockets = []
    for path in paths:
        ws = connect(path, **auth)
        assert (await ws.connect())[0], path
        await ws.receive_json_from()  # the snapshot
        sockets.append(ws)
    return sockets


async def preview_to(job_id) -> None:
    await get_channel_layer().group_send(realtime.job_group(job_id), realtime.sockets.envelope(PREVIEW))


def test_a_removed_member_is_cut_off_at_once_and_hears_nothing_more(team, job):
    paths = [f"/ws/jobs/{job.id}/", f"/ws/projects/{team['project'].slug}/"]
    bob_token, vera_token = factories.token(team["bob"]), factories.token(team["vera"])

    async def scenario():
        bob = await open_sockets(paths, token=bob_token)
        vera = await open_sockets(paths, token=vera_token)
        await preview_to(job.id)
        assert await bob[0].receive_json_from() == PREVIEW
        assert await vera[0].receive_json_from() == PREVIEW

        started = time.monotonic()
        await database_sync_to_async(studio_services.do_remove_member)(team["alice"], team["project"], "bob")
        for ws in bob:
            closed = await ws.receive_output(timeout=1)
            assert closed == {"type": "websocket.close", "code": realtime.CLOSE_ACCESS_ENDED}
        assert time.monotonic() - started < 1.0

        await preview_to(job.id)
        assert await vera[0].receive_json_from() == PREVIEW  # the others stay connected
        for ws in bob:
            assert await ws.receive_nothing(timeout=0.2)
        again = connect(paths[0], token=bob_token)
        assert not (await again.connect())[0]
        for ws in vera:
            await ws.disconnect()

    asyncio.run(scenario())


def test_a_changed_role_is_told_to_the_members_open_sockets(team, job):
    paths = [f"/ws/jobs/{job.id}/", f"/ws/projects/{team['project'].slug}/"]
    bob_token, vera_token = factories.token(team["bob"]), factories.token(team["vera"])

    async def scenario():
        bob = await open_sockets(paths, token=bob_token)
        vera = await open_sockets(paths, token=vera_token)
        await database_sync_to_async(studio_services.do_change_role)(
            team["alice"], team["project"], "bob", "viewer"
        )
        for ws in bob:
            assert await ws.receive_json_from(timeout=1) == {
                "type": "access.changed",
                "project": team["project"].slug,
                "role": "viewer",
            }
        for ws in vera:
            assert await ws.receive_nothing(timeout=0.2)
        await preview_to(job.id)
        assert await bob[0].receive_json_from() == PREVIEW  # a viewer still watches
        for ws in bob + vera:
            await ws.disconnect()

    asyncio.run(scenario())


def test_admin_rights_taken_away_close_the_projects_one_does_not_belong_to(team, job):
    """Root watches the poster project as a site admin; Alice, an admin too, leads it. The identity
    provider's groups stop making either of them admins."""
    studio_services.do_set_site_admin(team["alice"], True, via="test")
    paths = [f"/ws/jobs/{job.id}/", f"/ws/projects/{team['project'].slug}/"]
    root_token, alice_token = factories.token(team["root"]), factories.token(team["alice"])

    async def scenario():
        root = await open_sockets(paths, token=root_token)
        alice = await open_sockets(paths, token=alice_token)
        for who in ("root", "alice"):
            await database_sync_to_async(studio_services.do_set_site_admin)(team[who], False, via="test")
        for ws in root:
            closed = await ws.receive_output(timeout=1)
            assert closed == {"type": "websocket.close", "code": realtime.CLOSE_ACCESS_ENDED}
        for ws in alice:  # still the project's lead
            assert await ws.receive_json_from(timeout=1) == {
                "type": "access.changed",
                "project": team["project"].slug,
                "role": "lead",
            }
        await preview_to(job.id)
        assert await alice[0].receive_json_from() == PREVIEW
        for ws in alice:
            await ws.disconnect()

    asyncio.run(scenario())


def test_a_password_change_closes_the_other_sessions_sockets(team, job):
    here, there = Client(), Client()
    for client in (here, there):
        client.force_login(team["bob"])
    paths = [f"/ws/jobs/{job.id}/", f"/ws/projects/{team['project'].slug}/"]
    here_key, there_key = here.session.session_key, there.session.session_key

    async def scenario():
        mine = await open_sockets(paths, session_key=here_key)
        others = await open_sockets(paths, session_key=there_key)
        response = await database_sync_to_async(here.post)(
            "/account/password/",
            {
                "old_password": "correct horse battery",
                "new_password1": "a new staple battery",
                "new_password2": "a new staple battery",
            },
        )
        assert response.status_code == 302
        for ws in others:
            closed = await ws.receive_output(timeout=1)
            assert closed == {"type": "websocket.close", "code": realtime.CLOSE_ACCESS_ENDED}
        await preview_to(job.id)
        assert await mine[0].receive_json_from() == PREVIEW  # the session that changed it keeps its page
        for ws in mine:
            await ws.disconnect()

    asyncio.run(scenario())


def test_a_bad_frame_gets_an_error_and_the_socket_stays_up(team, job):
    token = factories.token(team["vera"])

    async def scenario():
        [ws] = await open_sockets([f"/ws/jobs/{job.id}/"], token=token)
        for frame in ({"text_data": "{not json"}, {"bytes_data": b"\x00\x01"}):
            await ws.send_to(**frame)
            answer = await ws.receive_json_from()
            assert answer["type"] == "error"
            assert "JSON" in answer["error"]
        await ws.send_json_to({"type": "ping"})  # well-formed: ignored
        await preview_to(job.id)
        assert await ws.receive_json_from() == PREVIEW
        await ws.disconnect()

    asyncio.run(scenario())


def test_deleting_a_project_closes_every_socket_showing_it(team, job):
    paths = [f"/ws/jobs/{job.id}/", f"/ws/projects/{team['project'].slug}/"]
    tokens = [factories.token(team[who]) for who in ("alice", "vera", "root")]

    async def scenario():
        sockets = [ws for token in tokens for ws in await open_sockets(paths, token=token)]
        await database_sync_to_async(studio_services.do_delete_project)(
            team["alice"], team["project"], "poster"
        )
        for ws in sockets:
            closed = await ws.receive_output(timeout=1)
            assert closed == {"type": "websocket.close", "code": realtime.CLOSE_ACCESS_ENDED}

    asyncio.run(scenario())
