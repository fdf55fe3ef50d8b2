"""Exports: a project's assets as a zip that is streamed while it is written, never built whole.

``zipfile`` writes to an unseekable pipe (it then puts sizes and CRCs in data descriptors after each member
instead of seeking back), and the generator hands the pipe's bytes on as they come: memory stays at about one
chunk however many images the export holds (plus the one image being signed). Each PNG is read from
storage (decrypted), signed with a further manifest carrying its review, and followed by a JSON sidecar with
the asset's full provenance, the exported file's size and sha256, and its review history.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from .models import Asset
from .provenance import sign_export
from .serializers import asset_to_dict
from .services import ExportPlan, asset_storage
from .storage import plaintext_chunks

CHUNK_SIZE = 64 * 1024
BATCH = 100  # assets fetched per query while streaming
# What an entry costs beyond its bytes: local header (30) + data descriptor (≤ 24) + central directory
# record (46) + zip64 extras, plus the name twice. Used only for the progress estimate.
ENTRY_OVERHEAD = 130
SIDECAR_ESTIMATE = 1500  # bytes per JSON sidecar, for the progress estimate
MANIFEST_ESTIMATE = 9000  # bytes the export's Content Credentials add to a PNG (two signed manifests)


class _Pipe:
    """A write-only, unseekable file for ``zipfile`` that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


def stored_file_chunks(name: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """A stored file's plaintext in chunks (decrypted when encrypted at rest; streamed from S3)."""
    return plaintext_chunks(name, chunk_size, asset_storage())


def exported_png_chunks(asset: Asset, plan: ExportPlan, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The PNG as exported: with Content Credentials on, the stored image signed again with a manifest that
    carries its review (one image in memory at a time); else the stored bytes, streamed."""
    if not settings.STUDIO_C2PA:
        yield from stored_file_chunks(str(asset.file.name), chunk_size)
        return
    png = b"".join(stored_file_chunks(str(asset.file.name), chunk_size))
    signed = sign_export(asset, png, exported_by=plan.exported_by)
    for start in range(0, len(signed), chunk_size):
        yield signed[start : start + chunk_size]


def review_history(asset: Asset) -> list[dict[str, Any]]:
    """The asset's review decisions, oldest first, when this studio records reviews; else an empty list."""
    related = getattr(asset, "reviews", None)
    if related is None:
        return []
    from . import serializers

    to_dict = getattr(serializers, "review_to_dict", None) or _review_to_dict
    return [to_dict(review) for review in related.all()]


def _first(obj: Any, *names: str) -> Any:
    return next((getattr(obj, n) for n in names if hasattr(obj, n)), None)


def _review_to_dict(review: Any) -> dict[str, Any]:
    by = _first(review, "reviewer", "by", "created_by", "user")
    at = _first(review, "created_at", "at", "time")
    return {
        "decision": getattr(review, "decision", None),
        "comment": getattr(review, "comment", ""),
        "by": by.get_username() if hasattr(by, "get_username") else (str(by) if by is not None else None),
        "at": at.isoformat() if hasattr(at, "isoformat") else at,
    }


def sidecar(asset: Asset, *, png_name: str, png_bytes: int, png_sha256: str) -> dict[str, Any]:
    """Everything the API says about the asset, plus the file it describes and its review history."""
    return {
        **asset_to_dict(asset),
        "file": {"name": png_name, "bytes": png_bytes, "sha256": png_sha256},
        "reviews": review_history(asset),
    }


def estimated_size(plan: ExportPlan) -> int:
    """About how many bytes the zip will have (for progress bars; the stream has no Content-Length)."""
    entries = 2 * len(plan.asset_ids)
    per_file = SIDECAR_ESTIMATE + (MANIFEST_ESTIMATE if settings.STUDIO_C2PA else 0)
    return plan.png_bytes + len(plan.asset_ids) * per_file + entries * (ENTRY_OVERHEAD + 90) + 22


def _assets(plan: ExportPlan) -> Iterator[Asset]:
    queryset = Asset.objects.select_related("project", "created_by")
    if hasattr(Asset, "reviews"):  # the review history, where this studio records one
        queryset = queryset.prefetch_related("reviews__by")
    for start in range(0, len(plan.asset_ids), BATCH):
        ids = plan.asset_ids[start : start + BATCH]
        by_id = {a.id: a for a in queryset.filter(id__in=ids)}
        # An asset deleted since the export began is simply left out.
        yield from (by_id[i] for i in ids if i in by_id)


def zip_chunks(plan: ExportPlan, name: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The export's zip, in chunks of about ``chunk_size`` bytes; its members sit in one folder named like
    the archive."""
    pipe = _Pipe()
    folder = name.removesuffix(".zip")
    with zipfile.ZipFile(pipe, "w", allowZip64=True) as archive:  # type: ignore[call-overload]
        for asset in _assets(plan):
            when = timezone.localtime(asset.created_at).timetuple()[:6]
            png_name = f"{folder}/{asset.id}.png"
            png = zipfile.ZipInfo(png_name, date_time=when)
            png.compress_type = zipfile.ZIP_STORED  # PNGs are compressed already
            digest, size = hashlib.sha256(), 0
            # force_zip64: the size is unknown until the end of the stream.
            with archive.open(png, "w", force_zip64=True) as member:
                for chunk in exported_png_chunks(asset, plan, chunk_size):
                    member.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if pipe.size >= chunk_size:
                        yield pipe.take()
            meta = zipfile.ZipInfo(f"{folder}/{asset.id}.json", date_time=when)
            meta.compress_type = zipfile.ZIP_DEFLATED
            text = sidecar(
                asset, png_name=png_name.split("/", 1)[1], png_bytes=size, png_sha256=digest.hexdigest()
            )
            archive.writestr(meta, json.dumps(text, indent=2, sort_keys=True) + "\n")
            if pipe.size >= chunk_size:
                yield pipe.take()
    tail = pipe.take()  # the central directory, written on close
    if tail:
        yield tail


def archive_name(plan: ExportPlan) -> str:
    return f"{plan.project.slug}-{plan.status}-{timezone.now():%Y-%m-%d}.zip"


async def as_async(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Serve a synchronous generator to an ASGI server chunk by chunk.

    Django's ASGI handler reads a synchronous streaming body into one list before sending it (with a
    warning), which would hold the whole zip in memory. Each ``next`` runs in the request's sync thread,
    where the generator's database queries belong.
    """
    iterator = iter(chunks)
    done = object()

    def step() -> Any:
        return next(iterator, done)

    def close() -> None:
        getattr(iterator, "close", lambda: None)()

    try:
        while (chunk := await sync_to_async(step)()) is not done:
            yield chunk
    finally:
        await sync_to_async(close)()
