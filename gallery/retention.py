"""Retention: each project's drafts and rejected images go once they are older than its setting.

Approved images are never deleted by it (nor submitted ones, nor those with changes requested: someone is
still working on them). Rows go first, in one transaction per project; the files leave storage once that
commits, and every purge is in the audit log with its counts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from generation import realtime
from studio import audit
from studio.models import Project

from .models import Asset, AssetStatus, ControlMap
from .services import delete_stored_files, drop_orphaned_control_maps

logger = logging.getLogger(__name__)

PURGED_STATUSES = (AssetStatus.DRAFT, AssetStatus.REJECTED)


@dataclass(frozen=True)
class Purge:
    project: str
    drafts: int
    rejected: int
    files: int


def purge_project(project: Project, *, now: dt.datetime | None = None) -> Purge | None:
    """Delete the project's drafts and rejected images made more than its ``retention_days`` ago. None
    when the project keeps its images, or nothing was due."""
    if not project.retention_days:
        return None
    cutoff = (now or timezone.now()) - dt.timedelta(days=project.retention_days)
    with transaction.atomic():
        due = list(
            Asset.objects.select_for_update()
            .filter(project=project, status__in=PURGED_STATUSES, created_at__lt=cutoff)
            .values_list("id", "status", "file", "thumbnail", "mask")
        )
        if not due:
            return None
        names = [name for row in due for name in row[2:] if name]
        ids = [row[0] for row in due]
        map_ids = list(ControlMap.objects.filter(assets__in=ids).values_list("id", flat=True).distinct())
        Asset.objects.filter(id__in=ids).delete()
        names += drop_orphaned_control_maps(map_ids)
        result = Purge(
            project=project.slug,
            drafts=sum(1 for row in due if row[1] == AssetStatus.DRAFT),
            rejected=sum(1 for row in due if row[1] == AssetStatus.REJECTED),
            files=len(names),
        )
        audit.record(
            None,
            audit.ASSET_PURGE,
            target=f"project:{project.slug}",
            project=project,
            details={
                "days": project.retention_days,
                "drafts": result.drafts,
                "rejected": result.rejected,
                "files": result.files,
            },
        )
        transaction.on_commit(lambda: delete_stored_files(names))
        gone = [str(row[0]) for row in due]
        transaction.on_commit(lambda: _announce_deleted(project.slug, gone))
    logger.info("retention purge in %s: %s", project.slug, result)
    return result


def _announce_deleted(slug: str, ids: list[str]) -> None:
    """Open galleries and image pages of the project hear that the images went."""
    for asset_id in ids:
        realtime.send_project_event(slug, {"type": realtime.ASSET_DELETED, "asset": {"id": asset_id}})


def purge_expired(*, now: dt.datetime | None = None) -> list[Purge]:
    """Run the purge for every project that has a retention setting."""
    done = []
    for project in Project.objects.filter(retention_days__isnull=False).order_by("id"):
        result = purge_project(project, now=now)
        if result is not None:
            done.append(result)
    return done
