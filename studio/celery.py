"""The Celery app: configured from Django settings (``CELERY_*``), tasks discovered in each app."""

import os

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init

from .lifetime import die_with_parent

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _die_with_worker(**kwargs: object) -> None:
    """Pool processes and the embedded beat die with the worker process that forked them, whatever
    killed it: none is left holding the GPU or the queue."""
    die_with_parent()


def _children_die_with_worker(**kwargs: object) -> None:
    """From the moment of the fork, not only once a pool process has started: a worker killed while its
    pool starts (a launcher stopped early) leaves no child behind."""
    os.register_at_fork(after_in_child=die_with_parent)


worker_init.connect(_children_die_with_worker, weak=False)
worker_process_init.connect(_die_with_worker, weak=False)
beat_init.connect(_die_with_worker, weak=False)
