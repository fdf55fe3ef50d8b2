"""Bodies over a route's limit never reach the studio: a declared length over it is a 413 before anything
is read, and a body without one is cut off where it passes the limit (the ASGI guard, any server; the
daphne guard is tested against a real daphne in tests/integration/test_body_limits_daphne.py)."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import override_settings

from studio.body_limits import BodyLimitMiddleware, body_limit

MB = 1024 * 1024


class Recorder:
    """An ASGI app that reads the whole body, then answers 200 with how many bytes it got."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""
        self.disconnected = False

    async def __call__(self, scope, receive, send):
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


def call(path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]):
    app = Recorder()
    sent: list[dict] = []
    pulled = 0

    async def receive():
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(asyncio.wait_for(BodyLimitMiddleware(app)(scope, receive, send), 5))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return app, status, body, pulled


@override_settings(
    STUDIO_MAX_BODY_BYTES=MB, STUDIO_UPLOAD_MAX_BYTES=20 * MB, STUDIO_JOB_MAX_BODY_BYTES=9 * MB
)
def test_each_route_has_its_limit():
    assert body_limit("/accounts/login/") == MB
    assert body_limit("/api/v1/projects/poster/uploads") == 21 * MB
    assert body_limit("/api/v1/projects/poster/jobs") == 9 * MB
    assert body_limit("/api/v1/projects/poster/jobs/extra") == MB
    assert body_limit("/sdapi/v1/img2img") == 2 * (4 * -(-20 * MB // 3)) + MB  # start image and mask, base64
    assert body_limit("/sdapi/v1/txt2img") == MB


@override_settings(STUDIO_MAX_BODY_BYTES=MB)
def test_a_declared_length_over_the_limit_is_refused_before_anything_is_read():
    app, status, body, pulled = call("/accounts/login/", [b"x" * 10], [(b"content-length", b"83886080")])
    assert status == 413 and not app.called and pulled == 0
    assert body == b"The request body is too large: at most 1.0 MB may be sent here."
    app, status, body, _ = call("/api/v1/projects/p/jobs", [b"{}"], [(b"content-length", b"not a number")])
    assert status == 413 and not app.called
    assert json.loads(body) == {"error": "The request body is too large: at most 9.0 MB may be sent here."}


@override_settings(STUDIO_MAX_BODY_BYTES=MB)
def test_a_body_without_a_length_is_cut_off_at_the_limit():
    chunks = [b"x" * (256 * 1024)] * 40  # 10 MB on offer
    app, status, _, pulled = call("/accounts/login/", chunks, [(b"transfer-encoding", b"chunked")])
    assert status == 413
    assert app.disconnected and len(app.body) <= MB  # the application got no more than the limit
    assert pulled == 5  # and no more was read than the chunk that passed it


@override_settings(STUDIO_MAX_BODY_BYTES=MB, STUDIO_UPLOAD_MAX_BYTES=20 * MB)
def test_bodies_within_the_limit_pass_untouched():
    chunks = [b"y" * MB] * 5
    app, status, body, _ = call(
        "/api/v1/projects/p/uploads", chunks, [(b"content-length", str(5 * MB).encode())]
    )
    assert (status, body) == (200, str(5 * MB).encode())
    app, status, body, _ = call("/accounts/login/", [b"a=1"], [])
    assert (status, body) == (200, b"3")


@pytest.mark.django_db
def test_the_studio_answers_413_through_its_asgi_application(team):
    """The real application (studio.asgi), a sign-in form far over the limit."""
    from studio.asgi import application

    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"username=a&password=" + b"x" * (2 * MB), "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/accounts/login/", "raw_path": b"/accounts/login/", "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(2 * MB + 20).encode())],
        "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(application(scope, receive, send))
    assert sent[0]["status"] == 413
