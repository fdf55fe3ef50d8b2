"""daphne hands request bodies to Django untouched.

daphne's requests are Twisted's, and Twisted parses every multipart POST body into ``request.args`` before
daphne passes the raw body on: work done twice (a 20 MB upload is parsed by both), and a body Twisted
cannot parse is answered with a bare 400 that never reaches the studio, so the client gets no JSON error
naming the field. Twisted's request takes ``parsePOSTFormSubmission=False`` for exactly this; daphne builds
its requests from ``daphne.http_protocol.WebRequest``, so that name is given a request that passes it.
Imported by ``studio.asgi``, which daphne loads before it serves.
"""

from __future__ import annotations

from typing import Any

from daphne import http_protocol


class WebRequest(http_protocol.WebRequest):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


if not issubclass(http_protocol.WebRequest, WebRequest):
    http_protocol.WebRequest = WebRequest
