"""Against a real daphne: a body over its route's limit is refused while it arrives. A declared length is a
413 before a byte of the body is sent (no "100 Continue" is offered), a chunked body is cut off near the
limit, and bodies within it still reach the studio."""

from __future__ import annotations

import select
import socket
import time

import pytest

from studio.models import AuditEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
MB = 1024 * 1024


def open_request(stack, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    sock.sendall(head.encode() + b"\r\n")
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def head(method: str, path: str, *headers: str) -> str:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, ""])


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(stack):
    started = time.monotonic()
    sock = open_request(
        stack,
        head("POST", "/accounts/login/", "Content-Type: application/x-www-form-urlencoded",
             f"Content-Length: {80 * MB}", "Expect: 100-continue"),
    )  # fmt: skip
    answer = read_all(sock)
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"100 Continue" not in answer
    assert answer.endswith(b"The request body is too large: at most 1.0 MB may be sent here.")
    assert not AuditEvent.objects.exists()  # the sign-in view never ran


def test_a_chunked_body_is_cut_off_near_the_limit(stack):
    sock = open_request(
        stack, head("POST", "/api/v1/projects/poster/jobs", "Content-Type: application/json",
                    "Transfer-Encoding: chunked")
    )  # fmt: skip
    chunk = b"%x\r\n" % (64 * 1024) + b"x" * (64 * 1024) + b"\r\n"
    sent = 0
    try:
        while sent < 200 * MB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered
            sock.sendall(chunk)
            sent += 64 * 1024
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'{"error": "The request body is too large: at most 9.0 MB may be sent here."}' in answer
    # What was sent beyond the limit sat in socket buffers at most; nowhere near the 200 MB on offer.
    assert sent < 9 * MB + 32 * MB


def test_a_body_within_the_routes_limit_reaches_the_studio(stack):
    body = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
    body += b"\0" * (5 * MB) + b"\r\n--b--\r\n"
    headers = [
        "Content-Type: multipart/form-data; boundary=b",
        f"Content-Length: {len(body)}",
        "Authorization: Bearer stu_not-a-token",
        "Connection: close",
    ]
    sock = open_request(stack, head("POST", "/api/v1/projects/poster/uploads", *headers))
    sock.sendall(body)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]  # the studio's answer to a bad token


def test_a_multipart_body_that_cannot_be_parsed_gets_the_studios_json_answer(stack):
    """daphne passes the body on unparsed, so the studio, not the web server, says what is wrong with it."""
    from tests import factories

    alice = factories.user("alice")
    factories.project(alice)
    token = factories.token(alice)
    body = b"--b0undary--\r\n"
    sock = open_request(
        stack,
        head("POST", "/api/v1/projects/poster/uploads", f"Authorization: Bearer {token}",
             "Content-Type: multipart/form-data; boundary=b0undary", f"Content-Length: {len(body)}",
             "Connection: close"),
    )  # fmt: skip
    sock.sendall(body)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"application/json" in answer.split(b"\r\n\r\n")[0]
    assert b'"image": ["This field is required."]' in answer
