"""Revocation on the real things (daphne, Redis, a worker making previews): a removed member's open sockets
close within a second and no preview reaches them afterwards, and a password change does the same to the
sockets of the user's other sessions, while everyone else keeps watching."""

from __future__ import annotations

import json
import time
import urllib.request
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from studio import sockets
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery"


def long_job(stack, token: str) -> str:
    body = {
        "prompt": "a green ring on a grey background",
        "steps": 150,
        "width": 128,
        "height": 128,
        "seed": 1,
    }
    status, job = stack.api("POST", "/api/v1/projects/poster/jobs", token, body)
    assert status == 201, job
    return job["id"]


def open_socket(
    stack, path: str, *, token: str | None = None, session: str | None = None
) -> ClientConnection:
    if token:
        headers = {"Authorization": f"Bearer {token}"}
    else:
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "Origin": stack.base_url}
    return connect(f"{stack.ws_url}{path}", additional_headers=headers, open_timeout=10)


def next_preview(ws: ClientConnection, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        if message["type"] == "preview":
            return message
    raise AssertionError("no preview")


def closed_after(ws: ClientConnection, started: float) -> tuple[float, list[str]]:
    """Seconds from ``started`` until the server closed the socket with the access-ended code, and the
    types of the messages that came before."""
    kinds: list[str] = []
    closed: ConnectionClosed | None = None
    while closed is None:
        try:
            kinds.append(json.loads(ws.recv(timeout=5))["type"])
        except ConnectionClosed as exc:
            closed = exc
    seconds = time.monotonic() - started
    assert closed.rcvd is not None and closed.rcvd.code == sockets.CLOSE_ACCESS_ENDED, closed
    return seconds, kinds


def test_a_removed_members_sockets_close_within_a_second(stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    alice_token, bob_token = factories.token(alice), factories.token(bob)
    job_id = long_job(stack, alice_token)

    job_ws = open_socket(stack, f"/ws/jobs/{job_id}/", token=bob_token)
    project_ws = open_socket(stack, "/ws/projects/poster/", token=bob_token)
    watcher = open_socket(stack, f"/ws/jobs/{job_id}/", token=alice_token)
    next_preview(job_ws)  # Bob is watching it form

    started = time.monotonic()
    status, _ = stack.api("DELETE", "/api/v1/projects/poster/members/bob", alice_token)
    assert status == 204
    for ws in (job_ws, project_ws):
        seconds, _ = closed_after(ws, started)
        assert seconds < 1.0, f"closed after {seconds:.2f}s"
    # The job still runs and its previews still reach Alice; none reach Bob, who cannot come back.
    next_preview(watcher, timeout=10)
    with pytest.raises(InvalidStatus):
        open_socket(stack, f"/ws/jobs/{job_id}/", token=bob_token)
    watcher.close()
    stack.api("POST", f"/api/v1/jobs/{job_id}/cancel", alice_token)


def test_a_password_change_closes_the_other_sessions_sockets(stack):
    alice = factories.user("alice")
    factories.project(alice, "Poster")
    token = factories.token(alice)
    here, there = Client(), Client()
    for client in (here, there):
        client.force_login(alice)
    here_key, there_key = here.session.session_key, there.session.session_key
    job_id = long_job(stack, token)
    mine = open_socket(stack, f"/ws/jobs/{job_id}/", session=here_key)
    other_job = open_socket(stack, f"/ws/jobs/{job_id}/", session=there_key)
    other_project = open_socket(stack, "/ws/projects/poster/", session=there_key)
    next_preview(other_job)

    # The password form, as the browser of the first session sends it (with its CSRF token).
    cookie = f"{settings.SESSION_COOKIE_NAME}={here_key}"
    with urllib.request.urlopen(
        urllib.request.Request(f"{stack.base_url}/account/", headers={"Cookie": cookie})
    ) as r:
        jar = SimpleCookie(r.headers["Set-Cookie"])
    csrf = jar[settings.CSRF_COOKIE_NAME].value
    new = "a fresh staple 42"
    form = {"old_password": PASSWORD, "new_password1": new, "new_password2": new, "csrfmiddlewaretoken": csrf}
    request = urllib.request.Request(
        f"{stack.base_url}/account/password/",
        data=urlencode(form).encode(),
        headers={"Cookie": f"{cookie}; {settings.CSRF_COOKIE_NAME}={csrf}"},
    )
    started = time.monotonic()
    opener = urllib.request.build_opener(NoRedirect)
    with opener.open(request) as response:
        assert response.status == 302 and response.headers["Location"] == "/account/"

    for ws in (other_job, other_project):
        seconds, _ = closed_after(ws, started)
        assert seconds < 1.0, f"closed after {seconds:.2f}s"
    next_preview(mine, timeout=10)  # the session that changed the password keeps its page
    mine.close()
    stack.api("POST", f"/api/v1/jobs/{job_id}/cancel", token)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_302(self, req, fp, code, msg, headers):
        return fp
