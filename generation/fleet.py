"""The worker fleet: what each worker holds, told to the others through Redis, and where a job goes.

**What a worker reports.** Each worker process writes its state to the cache (Redis) every
``STUDIO_WORKER_BEAT_SECONDS`` and whenever a pipeline call starts or ends, under a key that lives three
beats: its host and device, device memory (total and free), the models it has installed and the ones it keeps
loaded, the jobs of its current call with their authors, and its jobs and images of the last hour. A worker
whose key expired is gone. The workers page, ``GET /api/v1/admin/workers`` and ``/metrics`` read the
same keys, and each publish is relayed to the workers page's socket (``ws/workers/``, group ``FLEET_GROUP``).

**Where a job goes (the routing choice).** Routing stays on Celery and Redis, with one direct queue per worker
beside the pool's queue: each generation worker also consumes ``<pool>.<worker name>``. When a job is
queued, the web picks its worker from the live states: among the workers that have its model installed, one
that keeps it loaded, the least busy first; otherwise the least busy of them, which can load it soonest (the
most free memory breaks ties). The job's row records the choice (``routed_to``) and its message goes to that
worker's queue. A worker takes the next job routed to it in fair-share order, or an unrouted one it can run.

Why direct queues rather than workers pulling what they are warm for: a pull needs each worker to scan the
queue and skip what it cannot serve, and a message taken by the wrong worker is lost to the right one; a
direct queue keeps Celery's delivery guarantees (late acks, redelivery on a lost worker) per worker, and the
sweeper re-routes what waits for a worker that went away.

When no worker is known yet (all starting, or Redis lost the states) a job goes to the pool's queue and any
worker takes it. When live workers exist but none has the job's model installed, the job waits with a notice
saying so (its message on the pool's queue, taken only by a worker that has the model by then), and the
sweeper routes it once one reports it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

NAMES_KEY = "fleet:workers"
# Workers page sockets join this group; each state a worker publishes is relayed to it.
FLEET_GROUP = "fleet"
# Websocket messages (ws/workers/): the live workers, sent on connect; one worker's new state, relayed.
WORKERS = "workers"
WORKER_STATE = "worker.state"


def state_key(worker: str) -> str:
    return f"fleet:worker:{worker}"


def direct_queue(pool: str, worker: str) -> str:
    """The queue only ``worker`` consumes, beside its pool's."""
    return f"{pool}.{worker}"


def delivery_queue(pool: str, routed_to: str) -> str:
    """Where a job's message goes: its worker's direct queue, or the pool's when it is not routed."""
    return direct_queue(pool, routed_to) if routed_to else pool


def state_lifetime() -> float:
    return max(3 * settings.STUDIO_WORKER_BEAT_SECONDS, 1.0)


def worker_host() -> str:
    """The host a worker reports: ``STUDIO_WORKER_HOST`` (a container's or pod's node), else its hostname."""
    return os.environ.get("STUDIO_WORKER_HOST") or socket.gethostname()


# --- the worker's side --


class Reporter:
    """This worker process's state, published to the cache. One per process (``reporter()``)."""

    def __init__(self) -> None:
        self.name = ""
        self.pool = settings.STUDIO_GPU_QUEUE
        self.started_at = time.time()
        self.current: list[dict[str, Any]] = []
        self._finished: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        """Publish now, then every beat from a daemon thread."""
        self.name = name
        self.publish()
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="fleet-beat", daemon=True)
            self._thread.start()

    def running(self, jobs: Iterable[Any]) -> None:
        """A pipeline call started with these jobs."""
        with self._lock:
            self.current = [
                {
                    "job": str(job.id),
                    "user": job.created_by.username,
                    "project": job.project.slug,
                    "model": job.model_id,
                    "images": int((job.params or {}).get("num_images", 1)),
                }
                for job in jobs
            ]
        self.publish()

    def finished(self, jobs: int, images: int) -> None:
        """The current call ended: ``jobs`` of it made ``images`` images."""
        now = time.time()
        with self._lock:
            self.current = []
            self._finished.extend([(now, 0)] * max(jobs - 1, 0))
            if jobs:
                self._finished.append((now, images))
        self.publish()

    def _last_hour(self) -> tuple[int, int]:
        cutoff = time.time() - 3600
        with self._lock:
            while self._finished and self._finished[0][0] < cutoff:
                self._finished.popleft()
            return len(self._finished), sum(images for _, images in self._finished)

    def state(self) -> dict[str, Any]:
        from .engine import registry, runner

        jobs, images = self._last_hour()
        device = runner.device_report()
        with self._lock:
            current = list(self.current)
        return {
            "name": self.name,
            "host": worker_host(),
            "pool": self.pool,
            "pid": os.getpid(),
            **device,
            "installed": sorted(model.id for model in registry.list_models()),
            "loaded": runner.loaded_models(),
            "current": current,
            "jobs_last_hour": jobs,
            "images_last_hour": images,
            "started_at": self.started_at,
            "at": time.time(),
        }

    def publish(self) -> None:
        """Write the state; never raises (a worker keeps working while Redis is away)."""
        if not self.name:
            return
        try:
            state = self.state()
            cache.set(state_key(self.name), state, state_lifetime())
            names = cache.get(NAMES_KEY) or []
            if self.name not in names:
                cache.set(NAMES_KEY, sorted({*names, self.name}), None)
        except Exception:
            logger.warning("Could not publish the state of worker %s", self.name, exc_info=True)
            return
        from . import realtime

        realtime.send(FLEET_GROUP, {"type": WORKER_STATE, "worker": public_state(state)})

    def _beat(self) -> None:
        while True:
            time.sleep(settings.STUDIO_WORKER_BEAT_SECONDS)
            self.publish()


_reporter: Reporter | None = None


def reporter() -> Reporter:
    global _reporter
    if _reporter is None:
        _reporter = Reporter()
    return _reporter


# --- everyone's side --


def live_workers() -> dict[str, dict[str, Any]]:
    """The state of every worker whose key has not expired, by name. Empty when Redis cannot be read."""
    try:
        names = cache.get(NAMES_KEY) or []
        found = cache.get_many([state_key(name) for name in names])
    except Exception:
        logger.warning("Could not read the workers' states", exc_info=True)
        return {}
    live = {key.split(":", 2)[2]: value for key, value in found.items()}
    gone = [name for name in names if name not in live]
    if gone and len(names) > 64:  # keep the list of names from growing without end
        try:
            cache.set(NAMES_KEY, sorted(live), None)
        except Exception:
            logger.debug("Could not prune the workers' names", exc_info=True)
    return live


def public_workers() -> list[dict[str, Any]]:
    """The public state of every live worker, by name: the workers page, its socket's snapshot and
    ``GET /api/v1/admin/workers``."""
    return [public_state(state) for _, state in sorted(live_workers().items())]


def public_state(state: dict[str, Any]) -> dict[str, Any]:
    """A worker's state as the workers page and the API show it."""
    jobs = int(state.get("jobs_last_hour") or 0)
    images = int(state.get("images_last_hour") or 0)
    return {
        "name": state.get("name", ""),
        "host": state.get("host", ""),
        "pool": state.get("pool", ""),
        "device": state.get("device", ""),
        "memory_total": state.get("memory_total"),
        "memory_free": state.get("memory_free"),
        "rss_bytes": state.get("rss_bytes"),
        "installed": list(state.get("installed") or []),
        "loaded": list(state.get("loaded") or []),
        "current": list(state.get("current") or []),
        "jobs_per_hour": jobs,
        "images_per_hour": images,
        "last_heartbeat": state.get("at"),
    }


def choose_worker(
    pool: str, model_id: str, workers: dict[str, dict[str, Any]], backlog: dict[str, int], avoid: str = ""
) -> tuple[str | None, str]:
    """The worker for a job of ``model_id`` in ``pool``, and why (``loaded``, ``can_load``), or None and
    ``no_worker`` when no live worker of the pool has the model installed (``unknown`` when no worker of
    the pool is known at all). ``backlog`` counts the jobs routed to each worker and not yet finished.
    ``avoid`` (a worker just found dead) is chosen only when it is the only one."""
    members = {name: s for name, s in workers.items() if s.get("pool") == pool}
    if not members:
        return None, "unknown"
    able = {name: s for name, s in members.items() if model_id in (s.get("installed") or [])}
    if len(able) > 1:
        able.pop(avoid, None)
    if not able:
        return None, "no_worker"

    def busy(name: str) -> tuple[int, float]:
        state = able[name]
        running = len(state.get("current") or [])
        return backlog.get(name, 0) + running, -float(state.get("memory_free") or 0)

    warm = [name for name, s in able.items() if model_id in (s.get("loaded") or [])]
    if warm:
        return min(sorted(warm), key=busy), "loaded"
    return min(sorted(able), key=busy), "can_load"
