"""What ``/metrics`` says about generation, read at scrape time from where the truth is.

* Jobs by state and queued jobs per pool (queue): the job rows.
* Images and GPU-seconds per project: the quota usage rows (settled at each job's end).
* Job duration and queue wait: histograms the workers add to in the cache (Redis) as each job ends, so every
  worker host counts into the same series. They restart from zero if Redis loses its data, which
  Prometheus's ``rate()`` reads as a counter reset.
* Per worker, its loaded models and memory: the states workers publish for routing (``generation/fleet.py``).

Workers write only through ``record_job_timing`` and their fleet state (``generation/fleet.py``); neither
ever fails a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from studio.models import Project, QuotaUsage

from . import fleet
from .models import Job, JobStatus

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HISTOGRAMS = {"duration": DURATION_BUCKETS, "wait": WAIT_BUCKETS}


def _key(histogram: str, part: str) -> str:
    return f"metrics:job_{histogram}:{part}"


def _bucket_index(value: float, buckets: tuple[float, ...]) -> int:
    for index, bound in enumerate(buckets):
        if value <= bound:
            return index
    return len(buckets)  # +Inf


def _incr(key: str, amount: int = 1) -> None:
    if not cache.add(key, amount, timeout=None):
        cache.incr(key, amount)


def record_job_timing(job: Job) -> None:
    """Count a finished job's run time (start → finish) and its queue wait (created → start)."""
    if job.started_at is None or job.finished_at is None:
        return
    observed = {
        "duration": (job.finished_at - job.started_at).total_seconds(),
        "wait": (job.started_at - job.created_at).total_seconds(),
    }
    try:
        for name, value in observed.items():
            value = max(value, 0.0)
            _incr(_key(name, f"bucket:{_bucket_index(value, HISTOGRAMS[name])}"))
            _incr(_key(name, "count"))
            _incr(_key(name, "sum_ms"), int(value * 1000))
    except Exception:
        logger.warning("Could not record the timing of job %s", job.id, exc_info=True)


class GenerationCollector(Collector):
    """Read at each scrape: a handful of small grouped queries and cache reads."""

    def collect(self) -> Iterable[Any]:
        yield from self._jobs()
        yield from self._projects()
        try:
            yield from self._histograms()
            yield from self._workers()
        except Exception:  # Redis down: the database's figures still come out
            logger.warning("Could not read worker metrics from the cache", exc_info=True)

    def _jobs(self) -> Iterable[Any]:
        states = GaugeMetricFamily("studio_jobs", "Jobs by state.", labels=["state"])
        counts = dict(Job.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for state in JobStatus.values:
            states.add_metric([state], counts.get(state, 0))
        yield states
        queued = GaugeMetricFamily(
            "studio_queue_length", "Jobs waiting, per worker pool (queue).", labels=["pool"]
        )
        rows = Job.objects.filter(status=JobStatus.QUEUED).values_list("queue").annotate(n=Count("id"))
        for pool, n in rows.values_list("queue", "n"):
            queued.add_metric([pool], n)
        yield queued

    def _projects(self) -> Iterable[Any]:
        images = CounterMetricFamily("studio_project_images", "Images made, per project.", labels=["project"])
        seconds = CounterMetricFamily(
            "studio_project_gpu_seconds",
            "GPU-seconds used by finished jobs, per project.",
            labels=["project"],
        )
        slugs = dict(Project.objects.values_list("id", "slug"))
        usage = (
            QuotaUsage.objects.filter(subject="project")
            .values("subject_id")
            .annotate(images=Sum("images_used"), seconds=Sum("gpu_seconds_used"))
        )
        for row in usage:
            slug = slugs.get(row["subject_id"])
            if slug is not None:
                images.add_metric([slug], row["images"] or 0)
                seconds.add_metric([slug], row["seconds"] or 0.0)
        yield images
        yield seconds

    def _histograms(self) -> Iterable[Any]:
        described = {
            "duration": ("studio_job_duration_seconds", "Time from a job's start to its end."),
            "wait": ("studio_job_queue_wait_seconds", "Time a job waited in the queue before it started."),
        }
        for name, (metric, help_text) in described.items():
            bounds = HISTOGRAMS[name]
            keys = [_key(name, f"bucket:{i}") for i in range(len(bounds) + 1)]
            keys += [_key(name, "count"), _key(name, "sum_ms")]
            values = cache.get_many(keys)
            cumulative, buckets = 0, []
            for index, bound in enumerate([*bounds, float("inf")]):
                cumulative += int(values.get(_key(name, f"bucket:{index}"), 0))
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            total = int(values.get(_key(name, "sum_ms"), 0)) / 1000
            yield HistogramMetricFamily(metric, help_text, buckets=buckets, sum_value=total)

    def _workers(self) -> Iterable[Any]:
        models = GaugeMetricFamily(
            "studio_worker_model_loaded",
            "Models each worker keeps loaded (1 per model).",
            labels=["worker", "model"],
        )
        rss = GaugeMetricFamily("studio_worker_memory_bytes", "Worker resident memory.", labels=["worker"])
        gpu = GaugeMetricFamily(
            "studio_worker_gpu_memory_bytes", "GPU memory a worker holds.", labels=["worker"]
        )
        for worker, state in sorted(fleet.live_workers().items()):
            for model in state.get("loaded") or []:
                models.add_metric([worker, model], 1)
            rss.add_metric([worker], state.get("rss_bytes") or 0)
            if state.get("device_bytes") is not None:
                gpu.add_metric([worker], state["device_bytes"])
        yield models
        yield rss
        yield gpu
