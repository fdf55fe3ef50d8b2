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

from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage
from django.http import FileResponse, HttpResponse, HttpResponseBase


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


def private_file_response(field_file: Any, content_type: str, filename: str) -> HttpResponseBase:
    """The file of a FileField, never cached by shared caches: through nginx when it can be, else
    streamed from storage."""
    path = accel_path(field_file.storage, field_file.name)
    response: HttpResponseBase
    if path is not None:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = path
    else:
        response = FileResponse(field_file.open("rb"), content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response
