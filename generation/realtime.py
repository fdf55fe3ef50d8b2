"""Live job events: message types, group names, and how they reach the channel layer.

Services send through ``send_job_event`` / ``send_project_event`` from ``transaction.on_commit``. A running
job's worker sends its many per-step messages through a ``JobPublisher``: a thread with its own event loop, so
the diffusion loop never waits on Redis, and stale previews are dropped rather than queued when the layer is
slower than the GPU.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import io
import logging
import queue
import threading
import time
from typing import Any

import numpy as np
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from PIL import Image

from studio import sockets

logger = logging.getLogger(__name__)

# Message types sent to websocket clients (shared/API.md).
STATUS = "status"
PROGRESS = "progress"
PREVIEW = "preview"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
# Project stream.
JOB_CREATED = "job.created"
JOB_UPDATED = "job.updated"
ASSET_CREATED = "asset.created"
# An asset was deleted: open galleries drop its card, its open page says so. Carries {"asset": {"id"}}.
ASSET_DELETED = "asset.deleted"
# Review workflow: the gallery and asset pages repaint a badge on either.
ASSET_SUBMITTED = "asset.submitted"
ASSET_REVIEWED = "asset.reviewed"
# Fan-out to queued jobs' sockets: their queue position may have changed.
QUEUE_MOVED = "queue.moved"
# Sockets also hear from the team layer (studio/sockets.py): SESSION_END closes them, ACCESS_CHANGED makes
# them ask the permission module again; both close with CLOSE_ACCESS_ENDED when access ended.
SESSION_END = sockets.SESSION_END
ACCESS_CHANGED = sockets.ACCESS_CHANGED
CLOSE_ACCESS_ENDED = sockets.CLOSE_ACCESS_ENDED
# A client sent a frame the server cannot read (not JSON); the socket stays open.
ERROR = "error"

# Consumers receive every group message through this handler name.
HANDLER = sockets.HANDLER
user_group = sockets.user_group
access_group = sockets.access_group
send = sockets.send


def job_group(job_id: Any) -> str:
    return f"job.{job_id}"


def project_group(slug: str) -> str:
    return f"project.{slug}"


def queue_group(queue_name: str) -> str:
    return f"queue.{queue_name}"


def preview_cache_key(job_id: Any) -> str:
    return f"job:{job_id}:preview"


def progress_cache_key(job_id: Any) -> str:
    return f"job:{job_id}:progress"


def cancel_cache_key(job_id: Any) -> str:
    return f"job:{job_id}:cancel"


_cache_warned_at = 0.0


def cache_quietly(operation: Any, *args: Any) -> Any:
    """A cache call on the job's path that must not fail the job while Redis is away (None then). Said in
    the log at most every ten seconds: the diffusion loop makes one such call per step."""
    global _cache_warned_at
    try:
        return operation(*args)
    except Exception as exc:
        if time.monotonic() - _cache_warned_at > 10:
            _cache_warned_at = time.monotonic()
            logger.warning("The cache is unreachable (%s); going on without it", exc.__class__.__name__)
        return None


def send_job_event(job_id: Any, payload: dict[str, Any]) -> None:
    send(job_group(job_id), payload)


def send_project_event(slug: str, payload: dict[str, Any]) -> None:
    send(project_group(slug), payload)


def encode_preview(rgb: np.ndarray, max_size: int) -> str:
    image = Image.fromarray(rgb, "RGB")
    longest = max(image.size)
    if longest != max_size:
        scale = max_size / longest
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # Latents are small: smooth upscaling reads better than blocky pixels.
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class LivePublisher:
    """Sends the progress and previews of the jobs of one pipeline call from one background thread (one
    event loop, one channel layer connection), so that a call of many jobs adds no thread per job to the
    diffusion loop's process. Each job speaks through its own ``JobPublisher`` (``publisher.job(...)``)."""

    _STOP = object()

    PROGRESS_CACHE_SECONDS = 0.25

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), name="publisher", daemon=True
        )
        self._thread.start()

    def job(self, job_id: Any, *, image_size: int, min_preview_interval: float | None = None) -> JobPublisher:
        return JobPublisher(
            job_id, image_size=image_size, min_preview_interval=min_preview_interval, live=self
        )

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop the thread."""
        self._queue.put(self._STOP)
        self._thread.join(timeout)

    # --- the thread --

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._pump())
        finally:
            loop.close()

    async def _pump(self) -> None:
        layer = get_channel_layer()
        while True:
            item = await asyncio.to_thread(self._queue.get)
            if item is self._STOP:
                return
            publisher, payload = item
            if isinstance(payload, threading.Event):  # a job's flush: all it queued before is out
                payload.set()
                continue
            await publisher._send(layer, payload)


class JobPublisher:
    """Sends one running job's progress and previews from a background thread: its own, or the one of the
    ``LivePublisher`` of its pipeline call."""

    def __init__(
        self,
        job_id: Any,
        *,
        image_size: int,
        min_preview_interval: float | None = None,
        live: LivePublisher | None = None,
    ) -> None:
        self.job_id = job_id
        self.group = job_group(job_id)
        self.min_preview_interval = (
            settings.STUDIO_PREVIEW_MIN_INTERVAL if min_preview_interval is None else min_preview_interval
        )
        # Never larger than the image itself: the browser scales a small JPEG up for free.
        self.max_size = min(settings.STUDIO_PREVIEW_MAX_SIZE, image_size)
        self._progress_cached_at = 0.0
        self._last_preview_at = 0.0
        self._pending_preview = threading.Event()
        self._own = live is None
        self._live = live or LivePublisher()

    # --- called from the diffusion loop: never blocks --

    def progress(self, step: int, total: int) -> None:
        self._live.put((self, {"type": PROGRESS, "step": step, "total": total}))

    def wants_preview(self) -> bool:
        if self._pending_preview.is_set():
            return False  # the last one is not out yet: skip rather than pile up
        return time.monotonic() - self._last_preview_at >= self.min_preview_interval

    def preview(self, step: int, total: int, rgb: np.ndarray) -> None:
        self._last_preview_at = time.monotonic()
        self._pending_preview.set()
        self._live.put((self, ("preview", step, total, rgb)))

    def event(self, payload: dict[str, Any]) -> None:
        self._live.put((self, payload))

    def close(self, timeout: float = 10.0) -> None:
        """Flush what this job queued (and stop the thread, when it is the job's own)."""
        if self._own:
            self._live.close(timeout)
            return
        flushed = threading.Event()
        self._live.put((self, flushed))
        flushed.wait(timeout)

    # --- on the publisher's thread --

    async def _send(self, layer: Any, item: Any) -> None:
        try:
            if isinstance(item, tuple):
                _, step, total, rgb = item
                payload = {
                    "type": PREVIEW,
                    "step": step,
                    "total": total,
                    "image": encode_preview(rgb, self.max_size),
                }
                await asyncio.to_thread(cache.set, preview_cache_key(self.job_id), payload, 3600)
                self._pending_preview.clear()
            elif item["type"] == PROGRESS:
                payload = item
                # Late joiners read progress from the cache; a quarter-second lag is invisible to them.
                if time.monotonic() - self._progress_cached_at >= LivePublisher.PROGRESS_CACHE_SECONDS:
                    self._progress_cached_at = time.monotonic()
                    await asyncio.to_thread(
                        cache.set, progress_cache_key(self.job_id), [item["step"], item["total"]], 3600
                    )
            else:
                payload = item
            if layer is not None:
                await layer.group_send(self.group, sockets.envelope(payload))
        except Exception:
            self._pending_preview.clear()
            logger.warning("Live update for job %s failed", self.job_id, exc_info=True)
