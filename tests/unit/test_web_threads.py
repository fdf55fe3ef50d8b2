"""Web processes run views on a few long-lived threads (studio/web_threads.py): many requests at once use no
more threads than configured, each thread keeps its database connection, and an async view that waits holds
none of them."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.testing import ApplicationCommunicator

from studio.web_threads import Lanes, StudioASGIHandler, _leads_to_async_view
from tests.unit import web_threads_urls

pytestmark = [pytest.mark.urls("tests.unit.web_threads_urls"), pytest.mark.django_db(transaction=True)]


def scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


async def start(app: StudioASGIHandler, path: str) -> ApplicationCommunicator:
    communicator = ApplicationCommunicator(app, scope(path))
    await communicator.send_input({"type": "http.request", "body": b""})
    return communicator


async def answer(communicator: ApplicationCommunicator) -> tuple[int, dict]:
    head = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return head["status"], json.loads(body)


def test_the_least_busy_lane_takes_the_next_request():
    lanes = Lanes(3)
    assert [lanes.take() for _ in range(4)] == [0, 1, 2, 0]
    lanes.give_back(1)
    assert lanes.take() == 1
    with pytest.raises(ValueError, match="at least one thread"):
        Lanes(0)


def test_many_requests_at_once_run_on_the_configured_threads_and_keep_their_connections(settings):
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 600
    app = StudioASGIHandler(threads=2)

    async def scenario() -> list[dict]:
        communicators = [await start(app, "/where/") for _ in range(12)]
        answers = [await answer(c) for c in communicators]
        assert {status for status, _ in answers} == {200}
        return [body for _, body in answers]

    answers = asyncio.run(scenario())
    threads = {body["thread"] for body in answers}
    assert threads == {"web-1_0", "web-2_0"}
    # One connection per thread, opened once and used again by every later request on it.
    connections = {(body["thread"], body["connection"]) for body in answers}
    assert len(connections) == 2


def test_an_async_view_that_waits_holds_no_lane():
    app = StudioASGIHandler(threads=1)

    async def scenario() -> None:
        web_threads_urls.release = asyncio.Event()
        waiting = await start(app, "/wait/")
        assert await waiting.receive_nothing(0.2)
        status, body = await answer(await start(app, "/where/"))
        assert status == 200 and body["thread"] == "web-1_0"
        web_threads_urls.release.set()
        assert await answer(waiting) == (200, {"waited": True})

    asyncio.run(scenario())


def test_the_studios_async_views_are_known_by_their_urls():
    """The AUTOMATIC1111 generation calls wait for their images in an async view: they get a thread of their
    own, never a lane; pages and the studio's API take lanes."""
    assert _leads_to_async_view("studio.urls", "/sdapi/v1/txt2img")
    assert _leads_to_async_view("studio.urls", "/sdapi/v1/img2img")
    for path in ("/sdapi/v1/options", "/api/v1/projects/morning/assets", "/p/morning/gallery/", "/nowhere"):
        assert not _leads_to_async_view("studio.urls", path), path
