"""How a permission-checked view hands a private file to the client.

Behind nginx (``STUDIO_MEDIA_ACCEL``, an internal location prefix such as ``/_media/``) the view answers
with an empty body and ``X-Accel-Redirect``; nginx then streams the file, so daphne never holds a large
image in its event loop. nginx's internal locations cannot be requested from outside (404), so the only way
to a file is through the view's check.

* Filesystem storage: ``<prefix>files/<name>``, which nginx maps onto the media directory.
* S3 / MinIO: ``<prefix>s3/<bucket>/<key>?<presigned query>``. nginx fetches the object from the S3 server
  on the studio's own network, with a URL signed for a few seconds. Proxying rather than redirecting the
  browser to the presigned URL keeps the S3 server off the users' network (no CORS, no second host name
  and certificate to publish), keeps our Cache-Control and Content-Disposition, and keeps bearer-like URLs
  out of browser history and shared links.

Only files that can be sent as stored take that path; anything else (a storage that transforms bytes on
the way out, say one that decrypts) is streamed by the view, as without a proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage
from django.http import FileResponse, HttpResponse, HttpResponseBase, StreamingHttpResponse

CHUNK = 64 * 1024


def served_as_stored(storage: Storage) -> bool:
    """Whether the bytes in this storage are the bytes the client gets. A storage that transforms them
    (for example one that encrypts at rest) says so with ``transforms_content = True``."""
    return not getattr(storage, "transforms_content", False)


def accel_path(storage: Storage, name: str) -> str | None:
    """The internal location nginx serves ``name`` from, or None when the view must stream it."""
    prefix = settings.STUDIO_MEDIA_ACCEL
    if not prefix or not name or not served_as_stored(storage):
        return None
    if isinstance(storage, FileSystemStorage):
        return f"{prefix}files/{quote(name)}"
    if _is_s3(storage):
        s3: Any = storage  # django-storages' url() takes the expiry
        signed = urlsplit(s3.url(name, expire=settings.STUDIO_MEDIA_ACCEL_S3_SECONDS))
        return f"{prefix}s3{signed.path}?{signed.query}"
    return None


def _is_s3(storage: Storage) -> bool:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages without boto3
        return False
    # Path-style URLs (bucket in the path) are what nginx's fixed upstream can fetch.
    return isinstance(storage, S3Storage) and storage.addressing_style == "path"


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | Literal[False]:
    """The one byte range a ``Range`` header asks for, as ``(first, last)`` inclusive; None to send the
    whole file (no header, or one this does not serve: several ranges, other units); False when it cannot
    be satisfied (416)."""
    match = _RANGE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        suffix = int(last_text)
        return (max(0, size - suffix), size - 1) if suffix and size else False
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # not a range at all: ignored
    if first >= size:
        return False
    return first, min(int(last_text), size - 1) if last_text else size - 1


class _Slice:
    """``length`` bytes of an open file from where it stands, in chunks; closes the file when done."""

    def __init__(self, file: Any, length: int) -> None:
        self.file, self.left = file, length

    def __iter__(self) -> Iterator[bytes]:
        try:
            while self.left > 0:
                data = self.file.read(min(CHUNK, self.left))
                if not data:
                    return
                self.left -= len(data)
                yield data
        finally:
            self.file.close()


def private_file_response(
    field_file: Any, content_type: str, filename: str, range_header: str | None = None
) -> HttpResponseBase:
    """The file of a FileField, never cached by shared caches: through nginx when it can be (nginx serves
    ``Range`` itself), else streamed from storage, one byte range of it when the client asks (an encrypted
    file decrypts only the chunks the range covers)."""
    path = accel_path(field_file.storage, field_file.name)
    response: HttpResponseBase
    if path is not None:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = path
    else:
        opened = field_file.open("rb")
        size = opened.size
        wanted = byte_range(range_header, size)
        if wanted is False:
            opened.close()
            response = HttpResponse(status=416, content_type=content_type)
            response["Content-Range"] = f"bytes */{size}"
        elif wanted is not None:
            first, last = wanted
            opened.seek(first)
            response = StreamingHttpResponse(
                _Slice(opened, last - first + 1), status=206, content_type=content_type
            )
            response["Content-Range"] = f"bytes {first}-{last}/{size}"
            response["Content-Length"] = str(last - first + 1)
        else:
            response = FileResponse(opened, content_type=content_type)
        response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response
