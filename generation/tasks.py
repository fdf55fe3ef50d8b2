"""Celery tasks. They take ids, call the worker/services, and do nothing else."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import celeryd_after_setup, celeryd_init, worker_process_init, worker_ready
from django.conf import settings

from .services import RUN_JOB_TASK

logger = logging.getLogger(__name__)

# The worker's node name (``-n``), known to the main process before it forks its pool, and whether it runs
# generation jobs (it consumes the generation pool's queue).
_node_name = ""
_serves_pool = False


@shared_task(bind=True, name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: str) -> str:
    """Run a queued job. Idempotent: a second delivery of a running or finished job does nothing."""
    from .worker import execute_job

    return execute_job(job_id, worker=self.request.hostname or "worker")


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


@celeryd_after_setup.connect
def consume_direct_queue(sender=None, instance=None, **kwargs) -> None:
    """A generation worker also consumes its own queue, where the web routes the jobs meant for it (the
    routing choice: generation/fleet.py)."""
    from .fleet import direct_queue

    global _serves_pool
    queues = instance.app.amqp.queues
    consumed = set(queues.consume_from or queues)
    pool = settings.STUDIO_GPU_QUEUE
    if pool in consumed and sender:
        _serves_pool = True
        queues.select_add(direct_queue(pool, str(sender)))


@worker_process_init.connect
def warm_default_model(**kwargs) -> None:
    """Tell the fleet this worker is here, load torch and the default model when the pool process starts (not
    when the first job arrives), then keep the fleet told what it holds (generation/fleet.py)."""
    from .fleet import reporter
    from .worker import warm_up

    if not _serves_pool:
        return
    reporter().start(_node_name)
    warm_up()
    reporter().publish()
