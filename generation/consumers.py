"""Websockets: ``/ws/jobs/{id}/``, ``/ws/projects/{slug}/`` and ``/ws/workers/``. Thin: permission check,
then relay.

All join their user's group, and the first two their project's access group (``studio/sockets.py``), so the
team layer can close them (deactivation, a password change) or make them ask the permission module again (a
member removed, a role changed, the project deleted, admin rights taken away) without knowing what they
stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model
from django.core.cache import cache

from studio import sockets
from studio.metrics import websocket_closed, websocket_opened
from studio.permissions import projects_visible_to, role_in

from . import fleet, realtime
from .models import TERMINAL_STATES, Job, JobStatus
from .permissions import can_watch_workers, jobs_visible_to
from .scheduling import fair_share_order, queue_position
from .serializers import job_to_dict
from .services import terminal_event

BAD_FRAME = "Messages to this socket must be JSON text; it only sends updates."


@database_sync_to_async
def _visible_job(user: Any, job_id: str) -> Job | None:
    try:
        return jobs_visible_to(user).select_related("project", "created_by").filter(id=job_id).first()
    except Exception:  # a malformed id is simply not a job the user can see
        return None


@database_sync_to_async
def _current_role(user_id: Any, slug: str) -> str | None:
    """The user's role in the project now (read afresh: the socket's user may have changed since it
    connected), or None when they no longer see it."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return None
    project = projects_visible_to(user).filter(slug=slug).first()
    return role_in(user, project) if project is not None else None


@database_sync_to_async
def _job_snapshot(job_id: Any) -> list[dict[str, Any]] | None:
    """What a client joining now needs: the current status, the latest preview, or the outcome (None when
    the job is gone)."""
    job = Job.objects.select_related("project", "created_by").filter(id=job_id).first()
    if job is None:
        return None
    step, total = job.progress_step, job.progress_total
    cached = cache.get(realtime.progress_cache_key(job.id)) if job.status == JobStatus.RUNNING else None
    if cached:
        step, total = cached
    messages = [_status(job.status, step, total, queue_position(job), job.notice)]
    if job.status == JobStatus.RUNNING:
        preview = cache.get(realtime.preview_cache_key(job.id))
        if preview:
            messages.append(preview)
    elif job.status in TERMINAL_STATES:
        messages.append(terminal_event(job))
    return messages


def _status(status: str, step: int, total: int, position: int | None, notice: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": realtime.STATUS,
        "status": status,
        "progress": {"step": step, "total": total},
        "queue_position": position,
    }
    if notice:
        message["notice"] = notice
    return message


# How many queued jobs one read of a pool's queue covers (its fair-share order is read this far).
QUEUE_READ_LIMIT = 500


@database_sync_to_async
def _queued_statuses(queue: str) -> dict[str, dict[str, Any]]:
    """The status message of each queued job of ``queue`` (the first ``QUEUE_READ_LIMIT`` in order), by id."""
    order = fair_share_order(queue, limit=QUEUE_READ_LIMIT)
    rows = Job.objects.filter(id__in=order, status=JobStatus.QUEUED).values_list(
        "id", "progress_step", "progress_total", "notice"
    )
    found = {job_id: (step, total, notice) for job_id, step, total, notice in rows}
    statuses = {}
    for position, job_id in enumerate(order, start=1):
        if job_id in found:  # (else it started between the two reads)
            step, total, notice = found[job_id]
            statuses[str(job_id)] = _status(JobStatus.QUEUED, step, total, position, notice)
    return statuses


# When a pool's queue moves, every socket of its queued jobs in this process wants its new position at the
# same moment (500 viewers of a few jobs: 500 reads of the same order). They share one read per move.
_queue_reads: OrderedDict[tuple[str, str], asyncio.Future[dict[str, dict[str, Any]]]] = OrderedDict()
_QUEUE_READS_KEPT = 16


async def queued_statuses(queue: str, move: str) -> dict[str, dict[str, Any]]:
    """``_queued_statuses(queue)`` as read once for the queue move ``move`` in this process."""
    if not move:  # a sender that names no move: nothing to share
        return await _queued_statuses(queue)
    key = (queue, move)
    read = _queue_reads.get(key)
    if read is None or (read.done() and (read.cancelled() or read.exception() is not None)):
        read = _queue_reads[key] = asyncio.ensure_future(_queued_statuses(queue))
        while len(_queue_reads) > _QUEUE_READS_KEPT:
            _queue_reads.popitem(last=False)
    # Shielded: a socket that closes while it waits must not cancel the read the others wait on.
    return await asyncio.shield(read)


class StudioConsumer(AsyncJsonWebsocketConsumer):
    """What every studio socket shares: its user's and project's access groups, ending when access ends, and
    a clear answer to frames it cannot read."""

    project_slug = ""
    groups_joined: list[str]
    ended = False
    counted = ""  # the stream this socket is counted under in the metrics, while it is open

    async def opened(self, stream: str) -> None:
        """Accept the handshake and count the socket (``studio_websocket_connections``)."""
        await self.accept()
        websocket_opened(stream)
        self.counted = stream

    async def join(self, *groups: str) -> None:
        if not hasattr(self, "groups_joined"):
            self.groups_joined = []
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)

    async def join_user(self) -> bool:
        """Join the user's group before anything is checked, so a change to their access made while this
        socket connects still reaches it. False (and the handshake refused) for anonymous visitors."""
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()
            return False
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session = sockets.session_digest(getattr(session, "session_key", None))
        await self.join(sockets.user_group(user.pk))
        return True

    async def leave(self) -> None:
        if self.counted:  # once, however often the socket is left
            websocket_closed(self.counted)
            self.counted = ""
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def refuse(self) -> None:
        await self.leave()
        await self.close()  # before accept: refuses the handshake

    async def end_access(self) -> None:
        """Close because the user may no longer see what this socket shows: nothing more is sent."""
        self.ended = True
        await self.leave()
        await self.close(code=sockets.CLOSE_ACCESS_ENDED)

    async def disconnect(self, code: int) -> None:
        await self.leave()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:  # a binary frame
            await self.send_json({"type": realtime.ERROR, "error": BAD_FRAME})
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_json({"type": realtime.ERROR, "error": BAD_FRAME})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; well-formed messages are ignored."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels closes stale database connections before every message it hands a consumer, a round
        trip to a thread each time: with 500 viewers, 500 per preview step. The studio's events skip it,
        since these sockets reach the database only through ``database_sync_to_async``, which closes them
        itself; the handshake and the rest go through Channels' own dispatch."""
        if message.get("type") == realtime.HANDLER:
            await self.studio_event(message)
        else:
            await super().dispatch(message)

    async def studio_event(self, event: dict[str, Any]) -> None:
        if self.ended:
            return
        payload = event["payload"]
        kind = payload.get("type")
        if kind == sockets.SESSION_END:
            if not (payload.get("keep") and payload.get("keep") == self.session):
                await self.end_access()
            return
        if kind == sockets.ACCESS_CHANGED:
            # About this socket's project, or (no project named) about everything its user may see.
            if payload.get("project") in (None, self.project_slug) and payload.get("user") in (
                None,
                self.user_id,
            ):
                await self.recheck()
            return
        await self.relay(payload)

    async def recheck(self) -> None:
        """Ask the permission module again: close when the user no longer sees the project, else tell them
        their role."""
        role = await _current_role(self.user_id, self.project_slug)
        if role is None:
            await self.end_access()
        else:
            await self.send_json({"type": sockets.ACCESS_CHANGED, "project": self.project_slug, "role": role})

    async def relay(self, payload: dict[str, Any]) -> None:
        await self.send_json(payload)


class JobConsumer(StudioConsumer):
    async def connect(self) -> None:
        if not await self.join_user():
            return
        job = await _visible_job(self.scope["user"], self.scope["url_route"]["kwargs"]["job_id"])
        if job is None:
            await self.refuse()  # the job does not exist for this user
            return
        self.job_id = job.id
        self.project_slug = job.project.slug
        self.queue_name = job.queue
        self.queue_group = realtime.queue_group(job.queue)
        await self.join(realtime.job_group(job.id), self.queue_group, sockets.access_group(self.project_slug))
        snapshot = await _job_snapshot(job.id)
        if snapshot is None:  # deleted with its project meanwhile
            await self.refuse()
            return
        await self.opened("job")
        for message in snapshot:
            await self.send_json(message)

    async def relay(self, payload: dict[str, Any]) -> None:
        if payload["type"] == realtime.QUEUE_MOVED:
            statuses = await queued_statuses(self.queue_name, payload.get("move", ""))
            status = statuses.get(str(self.job_id))
            if status is None and len(statuses) >= QUEUE_READ_LIMIT:  # maybe queued further back
                snapshot = await _job_snapshot(self.job_id)
                status = snapshot[0] if snapshot and snapshot[0]["status"] == JobStatus.QUEUED else None
            if status is not None:
                await self.send_json(status)
            else:  # started or ended: no more positions to hear
                await self.channel_layer.group_discard(self.queue_group, self.channel_name)
            return
        await self.send_json(payload)


@database_sync_to_async
def _visible_project_snapshot(user: Any, slug: str) -> dict[str, Any] | None:
    project = projects_visible_to(user).filter(slug=slug).first()
    if project is None:
        return None
    active = (
        Job.objects.filter(project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .select_related("project", "created_by")
        .order_by("created_at")[:50]
    )
    return {"type": "snapshot", "project": project.slug, "active_jobs": [job_to_dict(j) for j in active]}


class ProjectConsumer(StudioConsumer):
    async def connect(self) -> None:
        if not await self.join_user():
            return
        self.project_slug = self.scope["url_route"]["kwargs"]["slug"]
        await self.join(sockets.access_group(self.project_slug))
        snapshot = await _visible_project_snapshot(self.scope["user"], self.project_slug)
        if snapshot is None:
            await self.refuse()
            return
        await self.join(realtime.project_group(self.project_slug))
        await self.opened("project")
        await self.send_json(snapshot)


@database_sync_to_async
def _workers_snapshot() -> dict[str, Any]:
    """The live workers, and the server's clock: the page tells a worker's age by it, not by the
    browser's."""
    return {"type": fleet.WORKERS, "workers": fleet.public_workers(), "now": time.time()}


@database_sync_to_async
def _may_watch_workers(user_id: Any) -> bool:
    """Whether the user, read afresh, may still watch the workers."""
    user = get_user_model().objects.filter(pk=user_id).first()
    return user is not None and can_watch_workers(user)


class WorkersConsumer(StudioConsumer):
    """``/ws/workers/``: site admins only. A snapshot of the live workers on connect, then each state a
    worker publishes (``worker.state``). Nothing says when a worker stops: its page marks it gone once its
    last heartbeat is three beats old."""

    async def connect(self) -> None:
        if not await self.join_user():
            return
        if not can_watch_workers(self.scope["user"], self.scope.get("api_token")):
            await self.refuse()
            return
        await self.join(fleet.FLEET_GROUP)
        await self.opened("workers")
        await self.send_json(await _workers_snapshot())

    async def recheck(self) -> None:
        if not await _may_watch_workers(self.user_id):
            await self.end_access()
