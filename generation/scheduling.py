"""Fair share: which queued job a free worker takes next.

Jobs queued for the same worker pool are ordered by how much GPU time their author used recently (finished
jobs in the last ``STUDIO_FAIR_SHARE_WINDOW`` seconds, plus the time their running jobs have run so far),
then by age. So a user with one job does not wait behind another user's batch of fifty, and among users
with equal recent use it is first come, first served. Celery messages only say "a job is waiting": a worker
that receives one takes the first job of this order, whichever job the message named.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Sum
from django.utils import timezone

from .models import Job, JobStatus


def recent_use(user_ids: set[int]) -> tuple[dict[int, float], float]:
    """GPU-seconds each user used in the window, and the window's average per finished job."""
    now = timezone.now()
    since = now - timedelta(seconds=settings.STUDIO_FAIR_SHARE_WINDOW)
    used: dict[int, float] = dict.fromkeys(user_ids, 0.0)
    finished = Job.objects.filter(finished_at__gte=since, status=JobStatus.SUCCEEDED)
    average = finished.aggregate(avg=Avg("gpu_seconds"))["avg"] or 1.0
    per_user = (
        finished.filter(created_by_id__in=user_ids).values("created_by_id").annotate(total=Sum("gpu_seconds"))
    )
    for row in per_user:
        used[row["created_by_id"]] += row["total"] or 0.0
    running = Job.objects.filter(
        created_by_id__in=user_ids, status=JobStatus.RUNNING, started_at__isnull=False
    )
    for user_id, started_at in running.values_list("created_by_id", "started_at"):
        if started_at is not None:
            used[user_id] += (now - started_at).total_seconds()
    return used, max(average, 1e-3)


def fair_share_order(queue: str, limit: int = 500) -> list[Any]:
    """Ids of the queued jobs of ``queue``, in the order workers will take them.

    Each job is keyed by the GPU time its author will have used by the time it starts: recent use, plus an
    average job for each of the author's jobs queued before it. Ties go to the older job.
    """
    queued = list(
        Job.objects.filter(status=JobStatus.QUEUED, queue=queue)
        .order_by("created_at", "id")
        .values_list("id", "created_by_id", "created_at")[:limit]
    )
    used, average = recent_use({user_id for _, user_id, _ in queued})
    ahead_of_own: dict[int, int] = {}
    keyed = []
    for job_id, user_id, created_at in queued:
        nth = ahead_of_own.get(user_id, 0)
        ahead_of_own[user_id] = nth + 1
        keyed.append((used[user_id] + nth * average, created_at, job_id))
    return [job_id for _, _, job_id in sorted(keyed, key=lambda k: (k[0], k[1]))]


def queue_position(job: Job) -> int | None:
    if job.status != JobStatus.QUEUED:
        return None
    order = fair_share_order(job.queue)
    return order.index(job.id) + 1 if job.id in order else len(order) + 1


def others_arrived(job: Job, seconds: float) -> bool:
    """Whether another job was submitted to the job's pool in the ``seconds`` before now: people are
    pressing Generate together, and more may be on their way."""
    since = timezone.now() - timedelta(seconds=seconds)
    return Job.objects.filter(queue=job.queue, created_at__gte=since).exclude(id=job.id).exists()
