"""The counts behind the admin's usage pages (``studio.usage``): images and GPU-seconds of jobs, grouped.

The studio app asks for them through ``settings.STUDIO_USAGE_COUNTS`` (this module's ``counts``), so that it
never reaches into the apps that own jobs and images."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, F, Sum

from gallery.models import Asset

from .models import Job, JobStatus


def counts(start: datetime, end: datetime, group: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """For the jobs finished in [start, end), grouped by the job fields in ``group`` (alias → field): the
    images of the succeeded ones (rows with ``n``) and the GPU-seconds of all of them (rows with ``s``; a
    failed or canceled job used its GPU time too). Two aggregate queries."""
    finished = {"finished_at__gte": start, "finished_at__lt": end}
    images: Any = (
        Asset.objects.filter(job__status=JobStatus.SUCCEEDED, **{f"job__{k}": v for k, v in finished.items()})
        .values(**{alias: F(f"job__{field}") for alias, field in group.items()})
        .annotate(n=Count("id"))
        .order_by()
    )
    gpu: Any = (
        Job.objects.filter(**finished)
        .values(**{alias: F(field) for alias, field in group.items()})
        .annotate(s=Sum("gpu_seconds"))
        .order_by()
    )
    return list(images), list(gpu)
