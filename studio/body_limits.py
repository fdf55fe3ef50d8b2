"""Request bodies are refused before they are read: each route has a size limit (``body_limit``), a
``Content-Length`` above it is answered 413 at once, and a body sent without one (chunked) is cut off where it
passes the limit.

Two guards enforce the same limits, because an ASGI application only hears of a request once its server has
read it:

* ``BodyLimitMiddleware`` wraps the ASGI application: with any ASGI server, nothing oversized reaches Django
  (which reads a body whole before any view runs).
* daphne (Twisted) reads a whole body into a temporary file before it calls the application at all, so
  ``guard_daphne`` makes its request class check the limit as the headers arrive and as each chunk comes in,
  answer 413 and close the connection: an 80 MB upload to the sign-in page costs the server a few kilobytes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from django.conf import settings

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# Multipart framing around an uploaded file: boundaries, part headers, the other fields.
MULTIPART_MARGIN = MB
UPLOAD_ROUTE = re.compile(r"^/api/v1/projects/[^/]+/uploads/?$")
# A job body may carry an inpainting mask as a PNG data URL.
JOB_ROUTE = re.compile(r"^/api/v1/projects/[^/]+/jobs/?$")
# The AUTOMATIC1111 API sends images inside its JSON, base64-encoded: a start image and a mask at most.
IMAGES_IN_JSON_ROUTE = re.compile(r"^/sdapi/v1/(img2img|png-info)/?$")


def body_limit(path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    upload = int(settings.STUDIO_UPLOAD_MAX_BYTES)
    if UPLOAD_ROUTE.match(path):
        return upload + MULTIPART_MARGIN
    if JOB_ROUTE.match(path):
        return int(settings.STUDIO_JOB_MAX_BODY_BYTES)
    if IMAGES_IN_JSON_ROUTE.match(path):
        return 2 * (4 * -(-upload // 3)) + MULTIPART_MARGIN  # two images of the upload limit, as base64
    return int(settings.STUDIO_MAX_BODY_BYTES)


def too_large(path: str, limit: int) -> tuple[bytes, bytes]:
    """The 413 answer: (content type, body). JSON under /api/ (the API's error shape), text elsewhere."""
    size = f"{limit / MB:.1f} MB" if limit >= MB else f"{limit // 1024} KB"
    message = f"The request body is too large: at most {size} may be sent here."
    if path.startswith("/api/"):
        return b"application/json", json.dumps({"error": message}).encode()
    return b"text/plain; charset=utf-8", message.encode()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared length; -1 when the header is there but not a length."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


ASGIApp = Callable[..., Awaitable[Any]]


class BodyLimitMiddleware:
    """ASGI: 413 for a declared length over the route's limit, before the application reads anything; for a
    body without a declared length, 413 once the bytes received pass the limit, and the application is told
    the client went away (Django then drops the request unread)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = body_limit(path)
        length = _content_length(scope.get("headers", []))
        if length is not None and (length < 0 or length > limit):
            return await self._refuse(send, path, limit)

        received = 0
        refused = False

        async def limited_receive() -> dict:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await self._refuse(send, path, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:
                await send(message)

        return await self.app(scope, limited_receive, guarded_send)

    @staticmethod
    async def _refuse(send: Any, path: str, limit: int) -> None:
        content_type, body = too_large(path, limit)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def guard_daphne() -> None:
    """Make daphne's HTTP request class enforce ``body_limit`` while it receives a request, and leave bodies
    for Django to parse (idempotent)."""
    from daphne import http_protocol

    base = http_protocol.WebRequest
    if getattr(base, "studio_body_limit", False):
        return

    class LimitedWebRequest(base):  # type: ignore[misc, valid-type]
        """Refuses a body over its route's limit as soon as that is known, before daphne stores it.

        It also hands bodies to Django unparsed. Twisted's request parses every multipart POST body into
        ``request.args`` before daphne passes the raw body on: work done twice, and a body Twisted cannot
        parse is answered with a bare 400 that never reaches the studio, so the client gets no JSON error
        naming the field. ``parsePOSTFormSubmission=False`` is Twisted's switch for exactly this."""

        studio_body_limit = True
        _refused = False
        _body_received = 0
        _body_limit = 0
        _limited_path = "/"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

        def gotLength(self, length: int | None) -> None:
            # Called once the headers are in; the request line's path is still only on the channel.
            raw = getattr(self.channel, "_path", b"/") or b"/"
            self._limited_path = unquote(raw.split(b"?", 1)[0].decode("latin-1"))
            self._body_limit = body_limit(self._limited_path)
            if length is not None and length > self._body_limit:
                self._refuse()
                return
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            if self._refused:
                return
            self._body_received += len(data)
            if self._body_received > self._body_limit:
                self._refuse()
                return
            super().handleContentChunk(data)

        def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
            if self._refused:
                return  # answered already; the application never hears of it
            super().requestReceived(command, path, version)

        def _refuse(self) -> None:
            self._refused = True
            self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the refusal
            content_type, body = too_large(self._limited_path, self._body_limit)
            head = (
                b"HTTP/1.1 413 Content Too Large\r\n"
                b"Content-Type: " + content_type + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n"
            )
            logger.warning(
                "Refused a request body over %s bytes for %s", self._body_limit, self._limited_path
            )
            transport = self.channel.transport
            transport.write(head + body)
            transport.loseConnection()

    http_protocol.WebRequest = LimitedWebRequest
