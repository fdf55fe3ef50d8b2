"""Writes for generation jobs: create, cancel, and the worker's side of the lifecycle.

Every state change is one of ``Job``'s conditional transitions; live events and Celery sends happen in
``transaction.on_commit`` so nobody hears of a row that was rolled back.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from gallery.serializers import asset_to_dict
from gallery.services import do_create_job_assets
from studio import audit, quotas
from studio import permissions as studio_permissions
from studio.errors import Conflict, InvalidInput, NotAllowed
from studio.models import Project

from . import realtime
from .engine import registry
from .models import TERMINAL_STATES, Job, JobStatus
from .permissions import can_cancel
from .scheduling import fair_share_order
from .serializers import job_to_dict

logger = logging.getLogger(__name__)

MAX_PROMPT = 2000
MAX_SEED = 2**32 - 1
JOB_FIELDS = {
    "prompt",
    "negative_prompt",
    "model",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "seed",
    "scheduler",
    "num_images",
    "mode",
}
# Parts of the job body (shared/API.md) that belong to generation modes this installation does not run yet.
MODE_FIELDS = {"init_asset", "mask", "strength", "variation", "scale", "loras"}


# --- validation --


def _int(value: Any, name: str, lo: int, hi: int, errors: dict[str, list[str]]) -> int | None:
    if isinstance(value, bool):
        value = None
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        errors[name] = ["Enter a whole number."]
        return None
    if not lo <= value <= hi:
        errors[name] = [f"Must be between {lo} and {hi}."]
        return None
    return value


def _float(value: Any, name: str, lo: float, hi: float, errors: dict[str, list[str]]) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors[name] = ["Enter a number."]
        return None
    if not lo <= value <= hi:
        errors[name] = [f"Must be between {lo:g} and {hi:g}."]
        return None
    return float(value)


def _text(value: Any, name: str, *, required: bool, errors: dict[str, list[str]]) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors[name] = ["Enter text."]
        return ""
    value = value.strip()
    if required and not value:
        errors[name] = ["This field is required."]
    elif len(value) > MAX_PROMPT:
        errors[name] = [f"At most {MAX_PROMPT} characters (this has {len(value)})."]
    return value


def check_job_params(data: dict[str, Any]) -> tuple[registry.ModelInfo, dict[str, Any]]:
    """Validate a job body; return the model and every parameter as it will be used (seed included).

    Raises InvalidInput listing every bad field; nothing is stored.
    """
    errors: dict[str, list[str]] = {}
    for key in data:
        if key in MODE_FIELDS:
            if data[key] not in (None, [], ""):
                errors[key] = ["Only text-to-image generation is available on this studio."]
        elif key not in JOB_FIELDS:
            errors[key] = ["Unknown field."]
    mode = data.get("mode") or "txt2img"
    if mode != "txt2img":
        errors["mode"] = ["Only txt2img is available on this studio."]

    prompt = _text(data.get("prompt"), "prompt", required=True, errors=errors)
    negative = _text(data.get("negative_prompt"), "negative_prompt", required=False, errors=errors)

    model_id = data.get("model")
    model = registry.get_model(model_id) if isinstance(model_id, str) and model_id else None
    if model_id in (None, ""):
        model = registry.default_model()
        if model is None:
            raise InvalidInput("No model is installed on this studio.", {"model": ["No model is installed."]})
    elif model is None:
        errors["model"] = ["No such model."]

    params: dict[str, Any] = {"mode": "txt2img", "prompt": prompt, "negative_prompt": negative}
    if model is not None:
        for dim, default in (("width", model.default_width), ("height", model.default_height)):
            value = _int(data.get(dim, default), dim, model.min_size, model.max_size, errors)
            if value is not None and value % 8:
                errors[dim] = ["Must be a multiple of 8."]
            params[dim] = value
        scheduler = data.get("scheduler") or model.default_scheduler
        if scheduler not in model.schedulers:
            errors["scheduler"] = [f"Choose one of: {', '.join(model.schedulers)}."]
        params["scheduler"] = scheduler
        params["model"] = model.id
        steps_default, guidance_default = model.default_steps, model.default_guidance
    else:
        steps_default, guidance_default = 20, 5.0
    params["steps"] = _int(data.get("steps", steps_default), "steps", 1, 150, errors)
    params["guidance_scale"] = _float(
        data.get("guidance_scale", guidance_default), "guidance_scale", 0, 30, errors
    )
    seed = data.get("seed")
    params["seed"] = (
        secrets.randbelow(MAX_SEED + 1) if seed in (None, "") else _int(seed, "seed", 0, MAX_SEED, errors)
    )
    params["num_images"] = _int(data.get("num_images", 1), "num_images", 1, 8, errors)

    if errors:
        raise InvalidInput("Some fields are invalid: " + ", ".join(sorted(errors)) + ".", errors)
    assert model is not None
    return model, params


# --- the web side --


def enqueue(job_id: Any, queue: str) -> None:
    """Hand the job to Celery. A broker outage is logged, not raised: the row stays queued and the sweeper
    sends it again."""
    from .tasks import run_job

    try:
        run_job.apply_async(
            args=(str(job_id),),
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception:
        logger.exception("Could not enqueue job %s; the sweeper will retry", job_id)


def do_create_job(user: Any, project: Project, data: dict[str, Any], *, ip: str | None = None) -> Job:
    """Validate, store a queued job, and enqueue it once the row is committed."""
    if not studio_permissions.can_generate(user, project):
        raise NotAllowed("Viewers cannot generate in this project.")
    model, params = check_job_params(data)
    with transaction.atomic():
        period_start = quotas.reserve(user, project, params["num_images"])
        job = Job.objects.create(
            project=project,
            created_by=user,
            model_id=model.id,
            params=params,
            queue=settings.STUDIO_GPU_QUEUE,
            progress_total=params["steps"],
            quota_period_start=period_start,
            reserved_images=params["num_images"],
        )
        audit.record(
            user,
            audit.JOB_CREATE,
            target=f"job:{job.id}",
            project=project,
            ip=ip,
            details={"model": model.id, "num_images": params["num_images"], "steps": params["steps"]},
        )
        transaction.on_commit(lambda: enqueue(job.id, job.queue))
        transaction.on_commit(
            lambda: realtime.send_project_event(
                project.slug, {"type": realtime.JOB_CREATED, "job": job_to_dict(job)}
            )
        )
    return job


def do_cancel_job(user: Any, job: Job, *, ip: str | None = None) -> Job:
    """Cancel a queued job at once, or ask a running one to stop at its next step."""
    if not can_cancel(user, job):
        raise NotAllowed("Only the job's author, the project's leads and admins may cancel it.")
    if job.status in TERMINAL_STATES:
        raise Conflict(f"The job has already {job.status}.")
    with transaction.atomic():
        if Job.cancel_queued(job.id):
            quotas.settle(job, 0, 0)
            transaction.on_commit(lambda: _announce_finished(job.id))
            transaction.on_commit(lambda: _announce_queue_moved(job.queue))
        elif Job.request_cancel(job.id):
            transaction.on_commit(lambda: cache.set(realtime.cancel_cache_key(job.id), True, 3600))
        else:
            job.refresh_from_db()
            if job.status in TERMINAL_STATES:
                raise Conflict(f"The job has already {job.status}.")
        audit.record(user, audit.JOB_CANCEL, target=f"job:{job.id}", project=job.project, ip=ip)
    job.refresh_from_db()
    return job


# --- the worker side --


def do_start_job(job_id: Any, worker: str) -> tuple[Job, int] | None:
    """queued → running for this worker: the first job in fair-share order of the named job's queue (usually
    the named job itself). None when nothing is queued there (a duplicate delivery, a cancel)."""
    queue = Job.objects.filter(id=job_id).values_list("queue", flat=True).first()
    if queue is None:
        return None
    for candidate in fair_share_order(queue, limit=50):
        attempt = Job.claim(candidate, worker)
        if attempt is not None:
            job_id = candidate
            break
    else:
        return None
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    cache.delete(realtime.preview_cache_key(job_id))
    realtime.send_job_event(
        job.id,
        {
            "type": realtime.STATUS,
            "status": JobStatus.RUNNING,
            "progress": {"step": 0, "total": job.progress_total},
        },
    )
    realtime.send_project_event(job.project.slug, {"type": realtime.JOB_UPDATED, "job": job_to_dict(job)})
    _announce_queue_moved(job.queue)
    return job, attempt


def do_heartbeat(job_id: Any, attempt: int, step: int, total: int) -> bool:
    """Record liveness and progress; returns whether a cancel was requested (or the job is no longer ours)."""
    updated = Job.running(job_id, attempt).update(
        heartbeat_at=timezone.now(), progress_step=step, progress_total=total
    )
    if not updated:
        return True
    return Job.objects.filter(id=job_id, cancel_requested=True).exists()


def cancel_requested_fast(job_id: Any) -> bool:
    return bool(cache.get(realtime.cancel_cache_key(job_id)))


def do_complete_job(
    job: Job,
    attempt: int,
    images: list[Any],
    seeds: list[int],
    *,
    gpu_seconds: float,
    model_name: str,
    model_sha256: str,
) -> bool:
    """running → succeeded with its assets, in one transaction. False if the job was no longer this
    attempt's to finish (canceled meanwhile, or handed to another worker)."""
    with transaction.atomic():
        updated = (
            Job.running(job.id, attempt)
            .filter(cancel_requested=False)
            .update(
                status=JobStatus.SUCCEEDED,
                finished_at=timezone.now(),
                gpu_seconds=gpu_seconds,
                progress_step=job.progress_total,
            )
        )
        if not updated:
            return False
        job.refresh_from_db()
        assets = do_create_job_assets(job, images, seeds, model_name=model_name, model_sha256=model_sha256)
        quotas.settle(job, len(assets), gpu_seconds)
        transaction.on_commit(lambda: _announce_finished(job.id))
        transaction.on_commit(lambda: _announce_assets(job.project.slug, assets))
    return True


def do_finish_job(job_id: Any, attempt: int, status: str, *, error: str = "", gpu_seconds: float = 0) -> bool:
    """running → failed or canceled."""
    with transaction.atomic():
        done = Job.finish(job_id, attempt, status, error=error[:2000], gpu_seconds=gpu_seconds)
        if done:
            quotas.settle(Job.objects.get(id=job_id), 0, gpu_seconds)  # releases the held images
            transaction.on_commit(lambda: _announce_finished(job_id))
    return done


def _announce_finished(job_id: Any) -> None:
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    realtime.send_job_event(job.id, terminal_event(job))
    realtime.send_project_event(job.project.slug, {"type": realtime.JOB_UPDATED, "job": job_to_dict(job)})
    cache.delete(realtime.cancel_cache_key(job_id))


def _announce_assets(slug: str, assets: list[Any]) -> None:
    for asset in assets:
        realtime.send_project_event(slug, {"type": realtime.ASSET_CREATED, "asset": asset_to_dict(asset)})


def _announce_queue_moved(queue: str) -> None:
    realtime.send(realtime.queue_group(queue), {"type": realtime.QUEUE_MOVED})


def terminal_event(job: Job) -> dict[str, Any]:
    if job.status == JobStatus.SUCCEEDED:
        assets = job.assets.select_related("project", "created_by").order_by("index")
        return {"type": realtime.SUCCEEDED, "assets": [asset_to_dict(a) for a in assets]}
    if job.status == JobStatus.FAILED:
        return {"type": realtime.FAILED, "error": job.error}
    return {"type": realtime.CANCELED}


# --- the sweeper --


def do_sweep_stale_jobs() -> dict[str, int]:
    """Re-queue running jobs whose worker stopped beating, and re-send long-queued jobs whose message may
    have been lost with the broker. Duplicate sends are harmless: a task only starts a queued job."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "canceled": 0, "skipped": 0, "resent": 0}
    stale_before = now - timedelta(seconds=settings.STUDIO_JOB_STALE_SECONDS)
    for job in Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before):
        counts[_requeue_or_give_up(job)] += 1
    resend_before = now - timedelta(seconds=settings.STUDIO_JOB_REQUEUE_SECONDS)
    for job in Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=resend_before):
        if Job.objects.filter(id=job.id, status=JobStatus.QUEUED).update(enqueued_at=now):
            enqueue(job.id, job.queue)
            counts["resent"] += 1
    return counts


def do_recover_worker_jobs(worker: str) -> int:
    """A worker that just started owns no running job: re-queue any still marked as its own (it died)."""
    return sum(
        _requeue_or_give_up(job) == "requeued"
        for job in Job.objects.filter(status=JobStatus.RUNNING, worker=worker)
    )


def _requeue_or_give_up(job: Job) -> str:
    """A running job whose worker is gone: queue it again, or end it when it was being canceled or has used
    up its attempts."""
    if job.cancel_requested:
        return "canceled" if do_finish_job(job.id, job.attempt, JobStatus.CANCELED) else "skipped"
    if job.attempt >= settings.STUDIO_JOB_MAX_ATTEMPTS:
        failed = do_finish_job(
            job.id,
            job.attempt,
            JobStatus.FAILED,
            error=f"The job's worker stopped {job.attempt} times; giving up.",
        )
        return "failed" if failed else "skipped"
    with transaction.atomic():
        if not Job.requeue(job.id, job.attempt):
            return "skipped"
        transaction.on_commit(lambda: enqueue(job.id, job.queue))
        transaction.on_commit(
            lambda: realtime.send_job_event(
                job.id,
                {
                    "type": realtime.STATUS,
                    "status": JobStatus.QUEUED,
                    "progress": {"step": 0, "total": job.progress_total},
                },
            )
        )
    return "requeued"
