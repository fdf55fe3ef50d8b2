"""Celery tasks. They take ids, call the worker/services, and do nothing else."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import celeryd_init, worker_process_init, worker_ready

from .services import RUN_JOB_TASK

logger = logging.getLogger(__name__)

# The worker's node name (``-n``), known to the main process before it forks its pool.
_node_name = ""


@shared_task(bind=True, name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: str) -> str:
    """Run a queued job. Idempotent: a second delivery of a running or finished job does nothing."""
    from .metrics import publish_worker_state
    from .worker import execute_job

    worker = self.request.hostname or "worker"
    try:
        return execute_job(job_id, worker=worker)
    finally:
        publish_worker_state(worker)


@shared_task(name="generation.tasks.sweep_stale_jobs")
def sweep_stale_jobs() -> dict[str, int]:
    """Re-queue jobs whose worker died; re-send queued jobs whose message was lost."""
    from .services import do_sweep_stale_jobs

    return do_sweep_stale_jobs()


@worker_ready.connect
def recover_own_jobs(sender=None, **kwargs) -> None:
    """A worker that (re)starts under a name still holding running jobs died before: re-queue them."""
    from .services import do_recover_worker_jobs

    hostname = getattr(sender, "hostname", None)
    if hostname:
        count = do_recover_worker_jobs(hostname)
        if count:
            logger.warning("Re-queued %d job(s) left running by an earlier %s", count, hostname)


@celeryd_init.connect
def remember_node_name(sender=None, **kwargs) -> None:
    global _node_name
    _node_name = str(sender or "")


@worker_process_init.connect
def warm_default_model(**kwargs) -> None:
    """Load torch and the default model when the pool process starts, not when the first job arrives; then
    report this process's models and memory to /metrics every 20 seconds."""
    from .worker import report_state_every, warm_up

    warm_up()
    if _node_name:
        report_state_every(_node_name, 20.0)
