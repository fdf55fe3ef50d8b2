"""Gallery tasks (Celery): thin, each calls one service."""

from __future__ import annotations

from celery import shared_task

from . import retention


@shared_task(name="gallery.tasks.purge_expired_assets", ignore_result=True)
def purge_expired_assets() -> int:
    """The daily retention purge (beat): drafts and rejected images past their project's retention."""
    return len(retention.purge_expired())
