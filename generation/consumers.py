"""Websockets: ``/ws/jobs/{id}/`` and ``/ws/projects/{slug}/``. Thin: permission check, then relay."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.cache import cache

from studio.metrics import websocket_closed, websocket_opened
from studio.permissions import projects_visible_to

from . import realtime
from .models import TERMINAL_STATES, Job, JobStatus
from .permissions import jobs_visible_to
from .serializers import job_to_dict
from .services import terminal_event


def _uncount(consumer: Any) -> None:
    """One decrement per counted connection, however often disconnect is called."""
    stream = getattr(consumer, "counted", None)
    if stream:
        consumer.counted = None
        websocket_closed(stream)


@database_sync_to_async
def _visible_job(user: Any, job_id: str) -> Job | None:
    try:
        return jobs_visible_to(user).select_related("project", "created_by").filter(id=job_id).first()
    except Exception:  # a malformed id is simply not a job the user can see
        return None


@database_sync_to_async
def _job_snapshot(job_id: Any) -> list[dict[str, Any]]:
    """What a client joining now needs: the current status, the latest preview, or the outcome."""
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    step, total = job.progress_step, job.progress_total
    cached = cache.get(realtime.progress_cache_key(job.id)) if job.status == JobStatus.RUNNING else None
    if cached:
        step, total = cached
    messages: list[dict[str, Any]] = [
        {
            "type": realtime.STATUS,
            "status": job.status,
            "progress": {"step": step, "total": total},
            "queue_position": job.queue_position(),
        }
    ]
    if job.notice:
        messages[0]["notice"] = job.notice
    if job.status == JobStatus.RUNNING:
        preview = cache.get(realtime.preview_cache_key(job.id))
        if preview:
            messages.append(preview)
    elif job.status in TERMINAL_STATES:
        messages.append(terminal_event(job))
    return messages


class JobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        job = await _visible_job(self.scope["user"], self.scope["url_route"]["kwargs"]["job_id"])
        if job is None:
            await self.close()  # refuses the handshake: the job does not exist for this user
            return
        self.job_id = job.id
        self.queue_group = realtime.queue_group(job.queue)
        self.groups_joined = [
            realtime.job_group(job.id),
            self.queue_group,
            realtime.user_group(self.scope["user"].id),
        ]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        websocket_opened("job")
        self.counted = "job"
        for message in await _job_snapshot(job.id):
            await self.send_json(message)

    async def disconnect(self, code: int) -> None:
        _uncount(self)
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; anything they send is ignored."""

    async def studio_event(self, event: dict[str, Any]) -> None:
        payload = event["payload"]
        if payload["type"] == realtime.SESSION_END:
            await self.close(code=realtime.CLOSE_ACCESS_ENDED)
            return
        if payload["type"] == realtime.QUEUE_MOVED:
            snapshot = await _job_snapshot(self.job_id)
            status = snapshot[0]
            if status["status"] == JobStatus.QUEUED:
                await self.send_json(status)
            else:
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


class ProjectConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        snapshot = await _visible_project_snapshot(self.scope["user"], slug)
        if snapshot is None:
            await self.close()
            return
        self.groups_joined = [realtime.project_group(slug), realtime.user_group(self.scope["user"].id)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        websocket_opened("project")
        self.counted = "project"
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        _uncount(self)
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen."""

    async def studio_event(self, event: dict[str, Any]) -> None:
        if event["payload"]["type"] == realtime.SESSION_END:
            await self.close(code=realtime.CLOSE_ACCESS_ENDED)
            return
        await self.send_json(event["payload"])
