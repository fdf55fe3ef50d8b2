"""The public shape of a job (shared/API.md)."""

from __future__ import annotations

from typing import Any

from gallery.serializers import asset_to_dict

from .models import Job, JobStatus
from .scheduling import queue_position


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def job_to_dict(job: Job, *, with_assets: bool = False, step: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(job.id),
        "project": job.project.slug,
        "status": job.status,
        "model": job.model_id,
        "params": job.params,
        "progress": {"step": job.progress_step if step is None else step, "total": job.progress_total},
        "queue_position": queue_position(job),
        "created_by": job.created_by.username,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "error": job.error or None,
        "notice": job.notice or None,
        "assets": [],
    }
    if with_assets and job.status == JobStatus.SUCCEEDED:
        assets = job.assets.select_related("project", "created_by").order_by("index")
        data["assets"] = [asset_to_dict(a) for a in assets]
    return data
